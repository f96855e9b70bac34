//! Two servers on one PostgreSQL and one NATS behave as one for live
//! delivery: a direct message reaches a user attached to the other server
//! at once, and a broadcast reaches every server's users. (What NATS loses
//! while it is down is caught up from PostgreSQL: `cluster_catch_up.rs`.)
//!
//! Real `postgres` and `nats-server` processes, each test its own; the
//! servers are in this process, each with its own hub, store connections
//! and NATS connection, as two processes would have.

mod common;

use bytes::Bytes;
use common::TwoNodes;
use proto::limits::BROADCAST_BIT;
use proto::Packet;

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
    alice.nothing_more_incoming().await;
}

#[tokio::test]
async fn a_broadcast_reaches_users_on_every_server_but_the_sender() {
    let nodes = TwoNodes::start().await;
    let (a, b) = (&nodes.a, &nodes.b);
    let mut alice = a.signed_in("alice").await;
    let mut carol = a.signed_in("carol").await;
    let mut bob = b.signed_in("bob").await;
    let mut dave = b.signed_in("dave").await;

    let mut to_alice = alice.broadcast_seeing(1, "from a").await;
    let mut to_bob = bob.broadcast_seeing(1, "from b").await;
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
        p.nothing_more_incoming().await;
    }
}
