//! What failures do to a cluster of real processes: `postgres`,
//! `nats-server` and `chat-server` nodes (the binary), each test its own.
//!
//! - PostgreSQL restarted while a client sends: requests meanwhile get
//!   SERVER_ERROR, service resumes by itself, and every message sent again
//!   with its number arrives once.
//! - kill -9 of one of three nodes in the middle of traffic from clients
//!   on all three: its clients sign in again through another node and
//!   send again what was not answered, and every message arrives exactly
//!   once (one delivery number per message), also what the dead node
//!   committed and never published (caught up when its lease ends).
//! - kill -9 of a node in the middle of an upload: once its lease ends,
//!   a live node removes the unfinished upload (row and partial body) and
//!   gives its bytes back to the cluster's quota; a live node's upload in
//!   progress is left alone and finishes.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::nats::NatsServer;
use common::postgres::PgServer;
use common::traffic::{body_of, read_and_ack, recipient_of, send_each, Seen, Sent};
use common::{kill_9, node_in_process, patience, pattern, spawn_node, Peer};
use proto::{ErrorCode, Packet};

/// Signs `name` in through `addr`, trying again while the cluster refuses
/// (a dead node's session may be held until its lease ends).
async fn sign_in_again(addr: SocketAddr, name: &str) -> Peer {
    let deadline = tokio::time::Instant::now() + 3 * patience();
    loop {
        let mut p = Peer::connect(addr).await;
        p.send(Packet::SessionRequest { name: name.into() }).await;
        match p.recv().await {
            Packet::SessionCookie { user, session } => {
                p.user = user;
                p.session = session;
                return p;
            }
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "{name} cannot sign in again through {addr}: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until each recipient has seen exactly `expected[i]` (as (from,
/// body)), nothing is left queued in PostgreSQL, and no message came under
/// two delivery numbers.
async fn all_delivered_once(pg: &PgServer, seen: &[Seen], expected: &[BTreeSet<(u64, Bytes)>]) {
    let db = pg.client().await;
    let deadline = tokio::time::Instant::now() + 3 * patience();
    loop {
        let queued: i64 =
            tokio::time::timeout(patience(), db.query_one("SELECT count(*) FROM queued", &[]))
                .await
                .expect("PostgreSQL answers in time")
                .unwrap()
                .get(0);
        let have: Vec<BTreeSet<(u64, Bytes)>> = seen
            .iter()
            .map(|s| s.lock().unwrap().keys().cloned().collect())
            .collect();
        if queued == 0 && have == expected {
            break;
        }
        let counts: Vec<String> = have
            .iter()
            .zip(expected)
            .map(|(h, e)| format!("{} of {}", h.len(), e.len()))
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all delivered and acknowledged in time: {queued} queued; recipients have {counts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for s in seen {
        for ((from, body), numbers) in s.lock().unwrap().iter() {
            assert_eq!(numbers.len(), 1, "{from}'s {body:?} came as {numbers:?}");
        }
    }
}

/// Sends message `n` and waits for its answer: `Ok` for MESSAGE RESPONSE,
/// `Err` for ERROR SERVER_ERROR; anything else fails the test.
async fn try_message(peer: &mut Peer, to: u64, n: u64) -> Result<(), String> {
    let session = peer.session;
    peer.send(Packet::MessageRequest {
        session,
        to,
        message: n,
        body: body_of(n),
    })
    .await;
    match peer.recv_skipping_incoming().await {
        Packet::MessageResponse { message } if message == n => Ok(()),
        Packet::Error {
            code: ErrorCode::ServerError,
            text,
            ..
        } => Err(text),
        p => panic!("message {n}: expected an answer or SERVER_ERROR, got {p:?}"),
    }
}

#[tokio::test]
async fn a_postgres_restart_answers_server_error_meanwhile_and_service_resumes_by_itself() {
    let mut pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    // A lease longer than the restart, so the nodes ride it out rather
    // than fence themselves (which is what a longer outage does).
    let flags = ["--lease", "30"];
    let (_a, a_addr) = spawn_node(&pg, &nats, files.path(), &flags).await;
    let (_b, b_addr) = spawn_node(&pg, &nats, files.path(), &flags).await;
    let mut alice = Peer::connect(a_addr).await;
    alice.sign_in("alice").await;
    let mut bob = Peer::connect(b_addr).await;
    bob.sign_in("bob").await;
    let bob_user = bob.user;
    let seen = Seen::default();
    let reader = read_and_ack(bob, seen.clone());

    let mut n = 0;
    for _ in 0..10 {
        n += 1;
        try_message(&mut alice, bob_user, n).await.unwrap();
    }
    pg.stop().await;
    // While it is down: SERVER_ERROR, promptly, and the connection stays.
    let mut failed = Vec::new();
    while failed.len() < 3 {
        n += 1;
        let answer = tokio::time::timeout(patience(), try_message(&mut alice, bob_user, n))
            .await
            .expect("an answer while PostgreSQL is down");
        match answer {
            Err(_) => failed.push(n),
            Ok(()) => panic!("message {n} answered while PostgreSQL was down"),
        }
    }
    pg.start_again().await;
    // Resumes by itself: the same numbers again, as the client core does,
    // until answered.
    for &m in &failed {
        let deadline = tokio::time::Instant::now() + 3 * patience();
        while let Err(e) = try_message(&mut alice, bob_user, m).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no service again after the restart: {e}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    for _ in 0..10 {
        n += 1;
        try_message(&mut alice, bob_user, n).await.unwrap();
    }
    let expected: BTreeSet<(u64, Bytes)> = (1..=n).map(|m| (alice.user, body_of(m))).collect();
    eventually_seen(&seen, &expected).await;
    // An acknowledgement that reached the node while PostgreSQL was down
    // was lost with its batch: the message stays queued and comes again
    // (under the same number) when Bob signs in again.
    reader.abort();
    let bob = sign_in_again(b_addr, "bob").await;
    let reader = read_and_ack(bob, seen.clone());
    all_delivered_once(&pg, &[seen], &[expected]).await;
    reader.abort();
}

/// Waits until `seen` has every message of `expected`.
async fn eventually_seen(seen: &Seen, expected: &BTreeSet<(u64, Bytes)>) {
    let deadline = tokio::time::Instant::now() + 3 * patience();
    loop {
        let have: BTreeSet<(u64, Bytes)> = seen.lock().unwrap().keys().cloned().collect();
        if &have == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} messages seen in time",
            have.len(),
            expected.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_9_of_one_of_three_nodes_mid_traffic_delivers_every_acknowledged_message_once() {
    // Enough that the kill lands mid-traffic on a fast machine too.
    const LAST: u64 = 1500;
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    // A short lease for node 0, the one killed: its sessions are free, and
    // the live nodes catch up, soon after it dies. The others keep the
    // default, so that no load on this machine makes them fence themselves.
    for i in 0..3 {
        let flags: &[&str] = if i == 0 { &["--lease", "3"] } else { &[] };
        nodes.push(spawn_node(&pg, &nats, files.path(), flags).await);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|(_, a)| *a).collect();

    // One recipient on each node, reading and acknowledging.
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut recipients = Vec::new();
    let mut readers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut p = Peer::connect(*addr).await;
        p.sign_in(&format!("r{i}")).await;
        recipients.push(p.user);
        readers.push(read_and_ack(p, seen[i].clone()));
    }
    // Three senders on each node, each to all three recipients in turn.
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..9 {
        let name = format!("s{i}");
        let mut p = Peer::connect(addrs[i % 3]).await;
        p.sign_in(&name).await;
        let sent = Arc::new(Sent::default());
        senders.push((name, i % 3, p.user, sent.clone()));
        tasks.push(send_each(p, recipients.clone(), sent, 1..=LAST));
    }
    // Mid-traffic: every sender has had answers, and more are in flight.
    let deadline = tokio::time::Instant::now() + patience();
    while senders
        .iter()
        .any(|(_, _, _, s)| s.answered.lock().unwrap().len() < 30)
    {
        assert!(tokio::time::Instant::now() < deadline, "no traffic in time");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let (mut victim, _) = nodes.remove(0);
    kill_9(&mut victim).await;
    for task in tasks {
        tokio::time::timeout(3 * patience(), task)
            .await
            .expect("senders finish or notice their node is gone")
            .unwrap();
    }
    let r0_reader = readers.remove(0);
    tokio::time::timeout(patience(), r0_reader)
        .await
        .expect("r0 notices its node is gone")
        .unwrap();

    // r0 comes back through node 1; node 0's senders through node 2, and
    // send again every number not answered, with the same number.
    let r0 = sign_in_again(addrs[1], "r0").await;
    assert_eq!(r0.user, recipients[0]);
    readers.push(read_and_ack(r0, seen[0].clone()));
    let mut answered_before = 0;
    let mut resends = Vec::new();
    let mut resend_tasks = Vec::new();
    for (name, node, user, sent) in &senders {
        assert_eq!(*sent.surprises.lock().unwrap(), [], "{name}'s answers");
        let answered = sent.answered.lock().unwrap().clone();
        answered_before += answered.len();
        if *node != 0 {
            assert_eq!(
                answered.len() as u64,
                LAST,
                "{name} on a live node got every answer"
            );
            continue;
        }
        assert!(
            (answered.len() as u64) < LAST,
            "{name} was not done when its node died"
        );
        let p = sign_in_again(addrs[2], name).await;
        assert_eq!(p.user, *user);
        let missing: Vec<u64> = (1..=LAST).filter(|n| !answered.contains(n)).collect();
        let again = Arc::new(Sent::default());
        resends.push((name.clone(), missing.len(), again.clone()));
        resend_tasks.push(send_each(p, recipients.clone(), again, missing.into_iter()));
    }
    assert!(answered_before >= 9 * 30);
    for task in resend_tasks {
        tokio::time::timeout(3 * patience(), task)
            .await
            .expect("the resends are answered in time")
            .unwrap();
    }
    for (name, count, again) in &resends {
        assert_eq!(*again.surprises.lock().unwrap(), [], "{name}'s answers");
        assert_eq!(
            again.answered.lock().unwrap().len(),
            *count,
            "{name}'s resends answered"
        );
    }

    // What node 0 committed but never published (its senders' resends
    // were found to be duplicates) reaches r1 and r2, online on the live
    // nodes, without a sign-in: their nodes catch up from PostgreSQL once
    // node 0's lease has ended.
    let mut expected: Vec<BTreeSet<(u64, Bytes)>> = vec![BTreeSet::new(); 3];
    for (_, _, user, _) in &senders {
        for n in 1..=LAST {
            let to = recipient_of(&recipients, n);
            let i = recipients.iter().position(|r| *r == to).unwrap();
            expected[i].insert((*user, body_of(n)));
        }
    }
    all_delivered_once(&pg, &seen, &expected).await;
    for r in readers {
        r.abort();
    }
}

/// Starts an upload of `data` and sends its first chunk; returns the file
/// number and the transaction.
async fn start_upload(peer: &mut Peer, name: &str, data: &[u8]) -> (u64, u64) {
    let (file, transaction) = peer.start_upload(name, data.len() as u32).await;
    peer.send_chunk(transaction, 0, data).await;
    (file, transaction)
}

/// The bytes the cluster's quota row charges, and what the files' rows
/// add up to (each at least the default 4096).
async fn storage(pg: &PgServer) -> (i64, i64) {
    let row = pg
        .client()
        .await
        .query_one(
            "SELECT (SELECT used FROM storage),
                    (SELECT COALESCE(sum(GREATEST(size, 4096)), 0)::int8 FROM files)",
            &[],
        )
        .await
        .expect("the storage row reads");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_dead_nodes_unfinished_upload_is_removed_and_a_live_ones_is_kept() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    // A short lease for the node killed: its uploads go once it has ended,
    // the others' renewal has noticed, and their pruning has run.
    let (mut a, a_addr) = spawn_node(&pg, &nats, files.path(), &["--lease", "2"]).await;
    let b = node_in_process(&pg, &nats, files.path()).await;
    let mut alice = Peer::connect(a_addr).await;
    alice.sign_in("alice").await;
    let mut bob = b.signed_in("bob").await;
    let (dead, _) = start_upload(&mut alice, "dead.bin", &pattern(10_000)).await;
    let live_data = pattern(600);
    let (live, transaction) = start_upload(&mut bob, "live.bin", &live_data).await;
    let part = |f: u64| files.path().join(format!("{f}.part"));
    assert!(part(dead).exists() && part(live).exists());
    assert_eq!(storage(&pg).await, (10_000 + 4096, 10_000 + 4096));

    kill_9(&mut a).await;
    let deadline = tokio::time::Instant::now() + 3 * patience();
    while part(dead).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's upload was not removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(storage(&pg).await, (4096, 4096), "its bytes are free again");
    assert!(part(live).exists(), "the live node's upload is left alone");

    // Bob's upload finishes and is listed.
    for chunk in 1..3u32 {
        bob.send_chunk(transaction, chunk, &live_data).await;
    }
    assert_eq!(bob.files().await, [live]);
    assert_eq!(bob.download(live).await, live_data);
}
