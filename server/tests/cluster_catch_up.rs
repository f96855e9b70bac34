//! What NATS loses while it is down is caught up from PostgreSQL.
//!
//! In a test binary of its own: it reads the process's metrics, which
//! another test's servers in the same process would also count.
//! Real `postgres` and `nats-server` processes; the recipient's server is
//! in this process, the sender's is the `chat-server` binary, killed with
//! SIGKILL.

mod common;

use std::sync::OnceLock;

use common::nats::NatsServer;
use common::postgres::PgServer;
use common::{kill_9, node_in_process, patience, spawn_node, Peer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proto::limits::BROADCAST_BIT;

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
    assert!(alice
        .broadcast_seeing(2, "everyone, before")
        .await
        .is_empty());
    let (_, seen, body) = bob.incoming().await;
    assert_eq!(&body[..], b"everyone, before");
    bob.ack(seen).await;
    bob.nothing_more_incoming().await;
    let catch_ups = sample("chat_bus_catch_ups_total");

    nats.kill();
    // Committed to PostgreSQL, so answered, though NATS is down.
    alice.message(bob.user, 3, "while nats was down").await;
    assert!(alice
        .broadcast_seeing(4, "everyone, while nats was down")
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
    bob.nothing_more_incoming().await;

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
