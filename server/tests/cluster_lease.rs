//! Self-fencing: a node that was paused past its lease (SIGSTOP, as a
//! stalled VM would be) acts for nobody when it runs again. It answers
//! the request that waited for it with an ERROR instead of storing it,
//! and exits with an error, for its supervisor to start it again.
//!
//! Real `postgres`, `nats-server` and `chat-server` processes; the lease is
//! judged by PostgreSQL's clock, read by the test from the `nodes` table.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::nats::NatsServer;
use common::postgres::PgServer;
use common::{patience, signal, spawn_node, Peer};
use proto::{ErrorCode, Packet};
use rustix::process::Signal;

#[tokio::test]
async fn a_node_paused_past_its_lease_fences_itself_and_stores_nothing() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let (mut node, addr) = spawn_node(&pg, &nats, files.path(), &["--lease", "1"]).await;
    let db = pg.client().await;
    let (id, name): (i64, String) = {
        let row = db
            .query_one("SELECT id, name FROM nodes", &[])
            .await
            .expect("the node joined");
        (row.get(0), row.get(1))
    };
    assert!(name.contains(&addr.to_string()), "{name}");

    let mut alice = Peer::connect(addr).await;
    alice.sign_in("alice").await;
    // The node is paused until its lease has ended by PostgreSQL's clock;
    // meanwhile a request waits for it in its socket.
    signal(&node, Signal::STOP);
    pg.every_lease_ended().await;
    let session = alice.session;
    alice
        .send(Packet::MessageRequest {
            session,
            to: alice.user,
            message: 1,
            body: Bytes::from_static(b"after the pause"),
        })
        .await;
    signal(&node, Signal::CONT);

    let (code, _, _, text) = alice.recv_error().await;
    assert_eq!(code, ErrorCode::ShuttingDown);
    assert!(text.contains("lease"), "{text}");
    alice.expect_closed().await;
    let status = tokio::time::timeout(patience(), node.wait())
        .await
        .expect("the fenced node exits in time")
        .unwrap();
    assert!(!status.success(), "a fenced node exits with an error");
    let queued: i64 = db
        .query_one("SELECT count(*) FROM queued", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "the fenced node stored nothing");
    let ended: bool = db
        .query_one(
            "SELECT lease_until < now() FROM nodes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended, "the fenced node did not renew its lease afterwards");
}

#[tokio::test]
async fn a_running_node_keeps_its_lease() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let (_node, addr) = spawn_node(&pg, &nats, files.path(), &["--lease", "3"]).await;
    let db = pg.client().await;
    let first: std::time::SystemTime = db
        .query_one("SELECT lease_until FROM nodes", &[])
        .await
        .unwrap()
        .get(0);
    // Renewals move the lease's end on, by PostgreSQL's clock.
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let now: std::time::SystemTime = db
            .query_one("SELECT lease_until FROM nodes", &[])
            .await
            .unwrap()
            .get(0);
        if now > first {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well past the lease's first end, the node still serves.
    until_the_database_clock_passes(&db, first).await;
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    bob.message(bob.user, 1, "still here").await;
}

/// Waits until PostgreSQL's clock is past `end`.
async fn until_the_database_clock_passes(db: &tokio_postgres::Client, end: std::time::SystemTime) {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let past: bool = db
            .query_one("SELECT now() > $1", &[&end])
            .await
            .unwrap()
            .get(0);
        if past {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database's clock stands still"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
