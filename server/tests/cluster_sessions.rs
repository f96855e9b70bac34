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
use common::{node_in_process, patience, signal, spawn_node, Peer, TwoNodes};
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
    let session = bob.session;
    bob.send(Packet::BroadcastRequest {
        session,
        message: 2,
        body: bytes::Bytes::from_static(b"to all"),
    })
    .await;
    assert_eq!(bob.recv().await, Packet::BroadcastResponse { message: 2 });
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
    let (mut a, addr_a) = spawn_node(&pg, &nats, files.path(), &["--lease", "1"]).await;
    let a_id: i64 = db
        .query_one("SELECT max(id) FROM nodes", &[])
        .await
        .unwrap()
        .get(0);
    let (_b, addr_b) = spawn_node(&pg, &nats, files.path(), &["--lease", "1"]).await;
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
    let session = bob.session;
    bob.send(Packet::BroadcastRequest {
        session,
        message: 2,
        body: bytes::Bytes::from_static(b"to all"),
    })
    .await;
    assert_eq!(bob.recv().await, Packet::BroadcastResponse { message: 2 });
    let mut before = vec![alice.incoming().await, alice.incoming().await];
    before.sort_by_key(|(_, n, _)| *n);

    a.start_kill().unwrap();
    tokio::time::timeout(patience(), a.wait())
        .await
        .expect("node a dies in time")
        .unwrap();
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
