//! One live session per name across a cluster, and sessions that move
//! between nodes: a name signed in on two nodes at once is taken by
//! exactly one; SESSION PRESERVE on another node moves the session there
//! and redelivers what was not acknowledged; a node paused past its lease
//! loses its sessions to another node and, running again, fences itself,
//! so the name is never held twice.
//!
//! Real `postgres` and `nats-server` processes, each test its own. Two
//! tests run their nodes in this process (each with its own hub, store
//! connections and NATS connection); the pause test runs `chat-server`
//! binaries, to stop one with SIGSTOP.

mod common;

use common::nats::NatsServer;
use common::postgres::PgServer;
use common::{kill_9, node_in_process, patience, signal, spawn_node, Peer, TwoNodes};
use proto::limits::BROADCAST_BIT;
use proto::{ErrorCode, Packet};
use rustix::process::Signal;

/// Sends SESSION REQUEST for `name` and returns the answer.
async fn try_sign_in(peer: &mut Peer, name: &str) -> Packet {
    peer.send(Packet::SessionRequest { name: name.into() })
        .await;
    let answer = peer.recv().await;
    if let Packet::SessionCookie { user, session } = answer {
        peer.user = user;
        peer.session = session;
    }
    answer
}

/// Sends SESSION PRESERVE for `old`'s session from `new`, expecting the
/// cookie.
async fn resume(new: &mut Peer, old: &Peer) {
    new.send(Packet::SessionPreserve {
        session: old.session,
    })
    .await;
    assert_eq!(
        new.recv().await,
        Packet::SessionCookie {
            user: old.user,
            session: old.session
        }
    );
    new.user = old.user;
    new.session = old.session;
}

#[tokio::test]
async fn one_name_signed_in_on_two_nodes_at_once_is_taken_by_exactly_one() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let mut winners = Vec::new();
    for round in 0..5 {
        let name = format!("racer{round}");
        let (mut on_a, mut on_b) = (a.peer().await, b.peer().await);
        // Both requests are on the wire before either answer is read.
        on_a.send(Packet::SessionRequest { name: name.clone() })
            .await;
        on_b.send(Packet::SessionRequest { name: name.clone() })
            .await;
        let (ra, rb) = tokio::join!(on_a.recv(), on_b.recv());
        let won = |p: &Packet| matches!(p, Packet::SessionCookie { .. });
        let lost = |p: &Packet| {
            matches!(
                p,
                Packet::Error {
                    code: ErrorCode::NameInUse,
                    ..
                }
            )
        };
        assert!(
            (won(&ra) && lost(&rb)) || (lost(&ra) && won(&rb)),
            "exactly one wins {name}: {ra:?} / {rb:?}"
        );
        let (winner, answer) = if won(&ra) { (on_a, ra) } else { (on_b, rb) };
        if let Packet::SessionCookie { user, .. } = answer {
            winners.push((user, winner));
        }
    }
    // Every winner is online, once, whichever node is asked.
    let mut expected: Vec<u64> = winners.iter().map(|(u, _)| *u).collect();
    expected.sort_unstable();
    let mut watcher_a = a.signed_in("watcher_a").await;
    let mut watcher_b = b.signed_in("watcher_b").await;
    let mut all = expected.clone();
    all.extend([watcher_a.user, watcher_b.user]);
    all.sort_unstable();
    assert_eq!(watcher_a.users().await, all);
    assert_eq!(watcher_b.users().await, all);
}

#[tokio::test]
async fn resume_on_the_other_node_moves_the_session_and_redelivers_what_was_not_acknowledged() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let mut alice = a.signed_in("alice").await;
    let mut bob = b.signed_in("bob").await;

    // A direct message and a broadcast reach alice on node A, and are
    // not acknowledged.
    bob.message(alice.user, 1, "unacknowledged").await;
    bob.broadcast(2, "to all").await;
    let first = alice.incoming().await;
    let second = alice.incoming().await;
    let mut before = vec![first, second];
    before.sort_by_key(|(_, n, _)| *n);

    // The session moves to node B; node A closes the old connection.
    let mut moved = b.peer().await;
    resume(&mut moved, &alice).await;
    let (code, _, _, text) = alice.recv_error().await;
    assert_eq!(code, ErrorCode::SessionMoved);
    assert!(text.contains("resumed"), "{text}");
    alice.expect_closed().await;

    // Both come again on node B, the same numbers and bodies.
    let mut again = vec![moved.incoming().await, moved.incoming().await];
    again.sort_by_key(|(_, n, _)| *n);
    assert_eq!(again, before);
    assert_eq!(before[0].1 & BROADCAST_BIT, 0);
    assert_ne!(before[1].1 & BROADCAST_BIT, 0);
    for (_, n, _) in &again {
        moved.ack(*n).await;
    }
    // Live from here on, on node B; alice is online once.
    bob.message(alice.user, 3, "live").await;
    let (_, n, body) = moved.incoming().await;
    assert_eq!(&body[..], b"live");
    moved.ack(n).await;
    let mut online = vec![alice.user, bob.user];
    online.sort_unstable();
    assert_eq!(moved.users().await, online);
    // The name is held by node B: a sign-in on node A is refused.
    let mut late = a.peer().await;
    match try_sign_in(&mut late, "alice").await {
        Packet::Error {
            code: ErrorCode::NameInUse,
            ..
        } => {}
        p => panic!("expected NAME_IN_USE, got {p:?}"),
    }
}

#[tokio::test]
async fn a_node_paused_past_its_lease_loses_its_sessions_and_fences_itself() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let db = pg.client().await;
    // A short lease for A, the node paused; B keeps the default, so that no
    // load on this machine makes it fence itself.
    let (mut a, addr_a) = spawn_node(&pg, &nats, files.path(), &["--lease", "2"]).await;
    let a_id: i64 = db
        .query_one("SELECT max(id) FROM nodes", &[])
        .await
        .unwrap()
        .get(0);
    let (_b, addr_b) = spawn_node(&pg, &nats, files.path(), &[]).await;
    let b_id: i64 = db
        .query_one("SELECT max(id) FROM nodes", &[])
        .await
        .unwrap()
        .get(0);

    let mut alice = Peer::connect(addr_a).await;
    alice.sign_in("alice").await;
    let mut carol = Peer::connect(addr_a).await;
    carol.sign_in("carol").await;
    // While node A holds the names, node B refuses them.
    let mut early = Peer::connect(addr_b).await;
    assert!(matches!(
        try_sign_in(&mut early, "carol").await,
        Packet::Error {
            code: ErrorCode::NameInUse,
            ..
        }
    ));

    signal(&a, Signal::STOP);
    pg.lease_ended(Some(a_id)).await;
    // Node A is dead by PostgreSQL's clock: node B takes its sessions
    // without asking it, by resuming one and signing the other in anew.
    let mut alice_b = Peer::connect(addr_b).await;
    resume(&mut alice_b, &alice).await;
    let mut carol_b = Peer::connect(addr_b).await;
    carol_b.sign_in("carol").await;
    assert_eq!(carol_b.user, carol.user);
    let mut online = vec![alice.user, carol.user];
    online.sort_unstable();
    assert_eq!(alice_b.users().await, online);

    signal(&a, Signal::CONT);
    // Node A, running again, serves nobody: its connections close and it
    // exits with an error.
    for old in [&mut alice, &mut carol] {
        let (code, _, _, text) = old.recv_error().await;
        assert_eq!(code, ErrorCode::ShuttingDown);
        assert!(text.contains("lease"), "{text}");
        old.expect_closed().await;
    }
    let status = tokio::time::timeout(patience(), a.wait())
        .await
        .expect("the fenced node exits in time")
        .unwrap();
    assert!(!status.success(), "a fenced node exits with an error");
    // The names were held once all along, and node B holds them now.
    let held: Vec<(i64, i64)> = db
        .query("SELECT user_id, node FROM owners ORDER BY user_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut expected = vec![(alice.user as i64, b_id), (carol.user as i64, b_id)];
    expected.sort_unstable();
    assert_eq!(held, expected);
    assert_eq!(alice_b.users().await, online);
    carol_b.message(alice.user, 1, "still one alice").await;
    let (_, _, body) = alice_b.incoming().await;
    assert_eq!(&body[..], b"still one alice");
}

/// The node holding a session is killed (kill -9) with a direct message
/// and a broadcast delivered there and not acknowledged. SESSION PRESERVE
/// on another node takes the session over without waiting for the dead
/// node's lease, and both come again: the direct message from the
/// mailbox, the broadcast from the ones PostgreSQL keeps (the dead node
/// cannot hand over what it owed).
#[tokio::test]
async fn resume_after_the_node_was_killed_redelivers_direct_messages_and_broadcasts() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let (mut a, a_addr) = spawn_node(&pg, &nats, files.path(), &[]).await;
    let b = node_in_process(&pg, &nats, files.path()).await;
    let mut alice = Peer::connect(a_addr).await;
    alice.sign_in("alice").await;
    let mut bob = b.signed_in("bob").await;

    bob.message(alice.user, 1, "unacknowledged").await;
    bob.broadcast(2, "to all").await;
    let mut before = vec![alice.incoming().await, alice.incoming().await];
    before.sort_by_key(|(_, n, _)| *n);

    kill_9(&mut a).await;
    let mut moved = b.peer().await;
    resume(&mut moved, &alice).await;
    let mut again = vec![moved.incoming().await, moved.incoming().await];
    again.sort_by_key(|(_, n, _)| *n);
    assert_eq!(again, before);
    assert_ne!(again[1].1 & BROADCAST_BIT, 0);
    for (_, n, _) in &again {
        moved.ack(*n).await;
    }
    // Alice is online once, on node B.
    let mut online = vec![alice.user, bob.user];
    online.sort_unstable();
    assert_eq!(moved.users().await, online);
}

/// Signs `name` in on `node` again and again until it is taken; panics if
/// that takes longer than the patience. Returns how many refusals came
/// first (NAME_IN_USE, the only refusal allowed).
async fn sign_in_when_free(node: &common::TestServer, name: &str) -> (Peer, usize) {
    let deadline = tokio::time::Instant::now() + patience();
    let mut refused = 0;
    loop {
        let mut peer = node.peer().await;
        match try_sign_in(&mut peer, name).await {
            Packet::SessionCookie { .. } => return (peer, refused),
            Packet::Error {
                code: ErrorCode::NameInUse,
                ..
            } => refused += 1,
            p => panic!("expected the cookie or NAME_IN_USE, got {p:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The writes that keep the `owners` rows can be lost (PostgreSQL away for
/// a moment, a release request NATS did not carry). Each node corrects the
/// rows naming it against its own sessions: here the rows are changed
/// behind the nodes' backs as such a loss would leave them, and node A
/// sets each right within a few seconds.
#[tokio::test]
async fn rows_left_wrong_by_lost_writes_are_corrected_by_their_node() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let db = nodes.pg.client().await;
    let ids: Vec<i64> = db
        .query("SELECT id FROM nodes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (node_a, node_b) = (ids[0], ids[1]);

    // Alice's client went away, and the write saying so was lost.
    let alice = a.signed_in("alice").await;
    drop(alice);
    let (alice, _) = sign_in_when_free(a, "alice").await;
    drop(alice);
    db.execute(
        "UPDATE owners SET attached = TRUE, since = now() - interval '1 minute'
         WHERE user_id = (SELECT id FROM users WHERE name = 'alice')",
        &[],
    )
    .await
    .unwrap();
    // Carol's session ended on node A, and the write deleting its row was
    // lost.
    let carol = a.signed_in("carol").await;
    let carol_user = carol.user;
    drop(carol);
    db.execute(
        "INSERT INTO owners (user_id, session, node, attached, epoch, since)
         VALUES ($1, 4242, $2, TRUE, 1, now() - interval '1 minute')
         ON CONFLICT (user_id) DO UPDATE SET session = 4242, node = $2,
             attached = TRUE, since = now() - interval '1 minute'",
        &[&(carol_user as i64), &node_a],
    )
    .await
    .unwrap();
    // Both names are free again, on node B too.
    let (_alice, _) = sign_in_when_free(b, "alice").await;
    let (_carol, _) = sign_in_when_free(b, "carol").await;

    // Dave's session was taken over by node B, and the request telling
    // node A never came: node A ends it as a release would have.
    let mut dave = a.signed_in("dave").await;
    db.execute(
        "UPDATE owners SET node = $1, session = 4343, since = now()
         WHERE user_id = $2",
        &[&node_b, &(dave.user as i64)],
    )
    .await
    .unwrap();
    let (code, _, _, _) = dave.recv_error().await;
    assert_eq!(code, ErrorCode::SessionMoved);
    dave.expect_closed().await;
}

/// Two connections to one node sign the same name in at once: one wins,
/// and the name's row in the cluster names the winner's session (both
/// take the row before the node's hub picks one; the loser gives it back).
#[tokio::test]
async fn one_name_signed_in_twice_on_one_node_leaves_the_row_to_the_winner() {
    let nodes = TwoNodes::start().await;
    let a = &nodes.a;
    let db = nodes.pg.client().await;
    for round in 0..10 {
        let name = format!("twice{round}");
        let (mut one, mut two) = (a.peer().await, a.peer().await);
        one.send(Packet::SessionRequest { name: name.clone() })
            .await;
        two.send(Packet::SessionRequest { name: name.clone() })
            .await;
        let (r1, r2) = tokio::join!(one.recv(), two.recv());
        let cookie = |p: &Packet| match p {
            Packet::SessionCookie { session, .. } => Some(*session),
            _ => None,
        };
        let winner = match (cookie(&r1), cookie(&r2)) {
            (Some(s), None) | (None, Some(s)) => s,
            _ => panic!("exactly one wins {name}: {r1:?} / {r2:?}"),
        };
        let held: i64 = db
            .query_one(
                "SELECT o.session FROM owners o JOIN users u ON u.id = o.user_id
                 WHERE u.name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(held as u64, winner, "{name}: the row names the winner");
    }
}
