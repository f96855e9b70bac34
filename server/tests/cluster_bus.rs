//! Two servers on one PostgreSQL and one NATS behave as one for live
//! delivery: a direct message reaches a user attached to the other server
//! at once, a broadcast reaches every server's users, and what NATS loses
//! while it is down is caught up from PostgreSQL.
//!
//! Real `postgres` and `nats-server` processes, each test its own; the
//! servers are in this process, each with its own hub, store connections
//! and NATS connection, as two processes would have, except the one that
//! is killed with SIGKILL, which is the `chat-server` binary.

mod common;

use std::sync::OnceLock;

use bytes::Bytes;
use common::nats::NatsServer;
use common::postgres::PgServer;
use common::{kill_9, node_in_process, patience, spawn_node, Peer, TwoNodes};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proto::limits::BROADCAST_BIT;
use proto::Packet;

/// An incoming message: (from, delivery number, body).
type Incoming = (u64, u64, Bytes);

/// Sends a broadcast and waits for its answer; returns what came in
/// meanwhile.
async fn broadcast(peer: &mut Peer, message: u64, body: &'static str) -> Vec<Incoming> {
    let session = peer.session;
    peer.send(Packet::BroadcastRequest {
        session,
        message,
        body: Bytes::from_static(body.as_bytes()),
    })
    .await;
    let mut seen = Vec::new();
    loop {
        match peer.recv().await {
            Packet::BroadcastResponse { message: m } if m == message => return seen,
            Packet::IncomingMessage {
                from,
                message,
                body,
            } => seen.push((from, message, body)),
            p => panic!("expected the broadcast's answer, got {p:?}"),
        }
    }
}

/// The next packet is not an incoming message: what `peer` was sent
/// before this call has all been read (the USERS answer comes after it).
async fn nothing_more_incoming(peer: &mut Peer) {
    let session = peer.session;
    peer.send(Packet::UsersRequest { session }).await;
    match peer.recv().await {
        Packet::UsersResponse { .. } => {}
        p => panic!("expected nothing before the users list, got {p:?}"),
    }
}

#[tokio::test]
async fn a_direct_message_reaches_a_user_on_the_other_server_at_once() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let mut alice = a.signed_in("alice").await;
    let mut bob = b.signed_in("bob").await;

    alice.message(bob.user, 1, "hello from a").await;
    let (from, delivery, body) = bob.incoming().await;
    assert_eq!((from, &body[..]), (alice.user, &b"hello from a"[..]));
    assert_eq!(delivery & BROADCAST_BIT, 0);
    bob.ack(delivery).await;

    // And back, and a resend is not delivered twice.
    bob.message(alice.user, 7, "hello from b").await;
    bob.message(alice.user, 7, "hello from b").await;
    bob.message(alice.user, 8, "and again").await;
    let (from, _, body) = alice.incoming().await;
    assert_eq!((from, &body[..]), (bob.user, &b"hello from b"[..]));
    let (_, _, body) = alice.incoming().await;
    assert_eq!(&body[..], b"and again");
    nothing_more_incoming(&mut alice).await;
}

#[tokio::test]
async fn a_broadcast_reaches_users_on_every_server_but_the_sender() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let mut alice = a.signed_in("alice").await;
    let mut carol = a.signed_in("carol").await;
    let mut bob = b.signed_in("bob").await;
    let mut dave = b.signed_in("dave").await;

    let mut to_alice = broadcast(&mut alice, 1, "from a").await;
    let mut to_bob = broadcast(&mut bob, 1, "from b").await;
    for p in [&mut carol, &mut dave] {
        let mut got = Vec::new();
        for _ in 0..2 {
            let (from, n, body) = p.incoming().await;
            assert_ne!(n & BROADCAST_BIT, 0);
            got.push((from, body));
            p.ack(n).await;
        }
        got.sort();
        let mut want = vec![
            (alice.user, Bytes::from_static(b"from a")),
            (bob.user, Bytes::from_static(b"from b")),
        ];
        want.sort();
        assert_eq!(got, want);
    }
    // Each sender got the other's, not its own.
    if to_alice.is_empty() {
        to_alice.push(alice.incoming().await);
    }
    let [(from, n, body)] = &to_alice[..] else {
        panic!("one broadcast for alice: {to_alice:?}");
    };
    assert_eq!((*from, &body[..]), (bob.user, &b"from b"[..]));
    alice.ack(*n).await;
    if to_bob.is_empty() {
        to_bob.push(bob.incoming().await);
    }
    let [(from, n, body)] = &to_bob[..] else {
        panic!("one broadcast for bob: {to_bob:?}");
    };
    assert_eq!((*from, &body[..]), (alice.user, &b"from a"[..]));
    let n = *n;
    // Bob leaves without acknowledging it and resumes: it is owed again,
    // though it came from the other server.
    let (session, user) = (bob.session, bob.user);
    drop(bob);
    let mut bob = b.peer().await;
    (bob.session, bob.user) = (session, user);
    bob.send(Packet::SessionPreserve { session }).await;
    assert!(matches!(bob.recv().await, Packet::SessionCookie { .. }));
    let (from, again, body) = bob.incoming().await;
    assert_eq!((from, again, &body[..]), (alice.user, n, &b"from a"[..]));
    for p in [&mut alice, &mut bob, &mut carol, &mut dave] {
        nothing_more_incoming(p).await;
    }
}

/// The Prometheus recorder of this test process, installed once.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder")
    })
}

/// A sample's value now (0 if not recorded yet), e.g.
/// `chat_bus_catch_ups_total`.
fn sample(series: &str) -> f64 {
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// NATS is killed, a direct message and a broadcast are sent meanwhile and
/// their sender's server killed (kill -9: the publications it held are
/// surely gone), then NATS comes back: the recipient's server catches up
/// from PostgreSQL, each once, and not the broadcast it had already.
#[tokio::test]
async fn messages_sent_while_nats_was_down_are_caught_up_from_postgres() {
    let pg = PgServer::start().await;
    let mut nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    metrics();
    let (mut a, a_addr) = spawn_node(&pg, &nats, files.path(), &[]).await;
    let b = node_in_process(&pg, &nats, files.path()).await;
    let mut alice = Peer::connect(a_addr).await;
    alice.sign_in("alice").await;
    let mut bob = b.signed_in("bob").await;
    alice.message(bob.user, 1, "before").await;
    let (_, first, _) = bob.incoming().await;
    bob.ack(first).await;
    assert!(broadcast(&mut alice, 2, "everyone, before")
        .await
        .is_empty());
    let (_, seen, body) = bob.incoming().await;
    assert_eq!(&body[..], b"everyone, before");
    bob.ack(seen).await;
    nothing_more_incoming(&mut bob).await;
    let catch_ups = sample("chat_bus_catch_ups_total");

    nats.kill();
    // Committed to PostgreSQL, so answered, though NATS is down.
    alice.message(bob.user, 3, "while nats was down").await;
    assert!(broadcast(&mut alice, 4, "everyone, while nats was down")
        .await
        .is_empty());
    kill_9(&mut a).await;
    nats.start_again().await;

    let mut caught = vec![bob.incoming().await, bob.incoming().await];
    caught.sort_by_key(|(_, delivery, _)| *delivery & BROADCAST_BIT);
    let [(from, direct, body), (bfrom, bnumber, bbody)] = &caught[..] else {
        unreachable!()
    };
    assert_eq!(
        (*from, &body[..]),
        (alice.user, &b"while nats was down"[..])
    );
    assert!(*direct > first && *direct & BROADCAST_BIT == 0);
    assert_eq!(
        (*bfrom, &bbody[..]),
        (alice.user, &b"everyone, while nats was down"[..])
    );
    assert!(*bnumber & BROADCAST_BIT != 0 && *bnumber != seen);
    for (_, delivery, _) in &caught {
        bob.ack(*delivery).await;
    }
    let after = sample("chat_bus_catch_ups_total");
    assert!(after > catch_ups);
    assert!(sample("chat_bus_caught_up_broadcasts_total") >= 1.0);
    nothing_more_incoming(&mut bob).await;

    // The bus works again: a new node's user reaches bob at once.
    let (_a, a_addr) = spawn_node(&pg, &nats, files.path(), &[]).await;
    let mut carol = Peer::connect(a_addr).await;
    carol.sign_in("carol").await;
    // Once a's lease ends, b catches up once more (a dead node may have
    // committed what it never published); after that nothing else reads
    // the store for bob, so what comes next came through NATS.
    let deadline = tokio::time::Instant::now() + patience();
    while sample("chat_bus_catch_ups_total") <= after {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no catch-up after a's lease ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let live = r#"chat_deliveries_total{path="live_direct"}"#;
    let live_before = sample(live);
    carol.message(bob.user, 1, "after").await;
    let (_, _, body) = bob.incoming().await;
    assert_eq!(&body[..], b"after");
    assert!(sample(live) > live_before, "it came live through NATS");
}
