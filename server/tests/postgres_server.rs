//! The whole server with its state in PostgreSQL (`--postgres`,
//! `--files-dir`): the same packets, the same answers as with SQLite, and
//! nothing acknowledged lost or doubled when the server is killed.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use common::nats::NatsServer;
use common::postgres::PgServer;
use common::traffic::{read_and_ack, send_until_broken, Seen, Sent};
use common::{kill_9, node_in_process, patience, pattern, spawn_node_in, Peer};
use proto::limits::BROADCAST_BIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Messages, a resend, a broadcast, a file, and everything still there
/// after a restart of the server: through a server whose state is in
/// PostgreSQL.
#[tokio::test]
async fn a_server_on_postgres_stores_messages_and_files_and_keeps_them() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let mut server = node_in_process(&pg, &nats, files.path()).await;
    let mut alice = server.signed_in("alice").await;
    let mut bob = server.signed_in("bob").await;
    let mut carol = server.signed_in("carol").await;
    alice.message(bob.user, 1, "hello").await;
    let (from, delivery, body) = bob.incoming().await;
    assert_eq!((from, &body[..]), (alice.user, &b"hello"[..]));
    // A resend is answered and not delivered again.
    alice.message(bob.user, 1, "hello").await;
    alice.message(bob.user, 2, "again").await;
    let (_, second, body) = bob.incoming().await;
    assert_eq!(&body[..], b"again");
    assert!(second > delivery);
    bob.ack(delivery).await;
    // A broadcast reaches everyone online but the sender.
    alice.broadcast(3, "hi all").await;
    for p in [&mut bob, &mut carol] {
        let (from, n, body) = p.incoming().await;
        assert_eq!((from, &body[..]), (alice.user, &b"hi all"[..]));
        assert_ne!(n & BROADCAST_BIT, 0);
        p.ack(n).await;
    }
    assert_eq!(alice.users().await.len(), 3);
    let data = pattern(1000);
    let file = alice.upload("notes.txt", &data).await;
    assert_eq!(bob.files().await, [file]);
    assert_eq!(bob.download(file).await, data);
    // The file body is in --files-dir, named by its number.
    assert!(files.path().join(file.to_string()).exists());
    drop((alice, bob, carol));
    server.restart().await;
    let mut bob = server.signed_in("bob").await;
    // Only the unacknowledged message comes again.
    let (_, again, body) = bob.incoming().await;
    assert_eq!((again, &body[..]), (second, &b"again"[..]));
    assert_eq!(bob.files().await, [file]);
    assert_eq!(bob.download(file).await, data);
}

/// `--postgres` without `--files-dir` is refused at start, saying why.
#[tokio::test]
async fn postgres_without_a_files_dir_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.postgres = Some("postgres://chat@127.0.0.1:1/postgres".into());
    let err = server::start(config).await.expect_err("refused");
    assert!(err.to_string().contains("--files-dir"), "{err}");
}

/// `--postgres` without `--nats` is refused at start, saying why, and so
/// is `--nats` without `--postgres`.
#[tokio::test]
async fn postgres_without_nats_and_nats_without_postgres_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.postgres = Some("postgres://chat@127.0.0.1:1/postgres".into());
    config.files_dir = Some(dir.path().to_path_buf());
    let err = server::start(config.clone()).await.expect_err("refused");
    assert!(err.to_string().contains("--nats"), "{err}");
    config.postgres = None;
    config.nats = Some("nats://127.0.0.1:1".into());
    let err = server::start(config).await.expect_err("refused");
    assert!(err.to_string().contains("--postgres"), "{err}");
}

/// kill -9 of the server while four senders pipeline messages to a
/// recipient who reads them live and one who is away; then a new server
/// on the same database, the senders resend everything unanswered with
/// the same numbers (as the client core does), and each recipient gets
/// every message exactly once: no message under two delivery numbers.
#[tokio::test]
async fn kill_9_mid_traffic_loses_no_acknowledged_message_and_doubles_none() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    // A short lease: the killed node's sessions are free once it ends.
    let (mut child, addr) = spawn_node_in(
        Some(cwd.path()),
        &pg,
        &nats,
        files.path(),
        &["--lease", "3"],
    )
    .await;

    let mut carol = Peer::connect(addr).await;
    carol.sign_in("carol").await;
    let carol_user = carol.user;
    drop(carol);
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    let bob_user = bob.user;
    let (bob_seen, carol_seen): (Seen, Seen) = Default::default();
    let bob_reader = read_and_ack(bob, bob_seen.clone());

    let names = ["s0", "s1", "s2", "s3"];
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for name in names {
        let mut p = Peer::connect(addr).await;
        p.sign_in(name).await;
        let sent = Arc::new(Sent::default());
        senders.push((name, p.user, sent.clone()));
        tasks.push(send_until_broken(p, vec![bob_user, carol_user], sent));
    }
    // Mid-traffic: once every sender has had answers, and more are in
    // flight.
    let deadline = tokio::time::Instant::now() + patience();
    while senders
        .iter()
        .any(|(_, _, s)| s.answered.lock().unwrap().len() < 100)
    {
        assert!(tokio::time::Instant::now() < deadline, "no traffic in time");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    kill_9(&mut child).await;
    for task in tasks {
        tokio::time::timeout(patience(), task)
            .await
            .expect("senders notice the server is gone")
            .unwrap();
    }
    tokio::time::timeout(patience(), bob_reader)
        .await
        .expect("bob notices the server is gone")
        .unwrap();
    let answered_before: usize = senders
        .iter()
        .map(|(_, _, s)| s.answered.lock().unwrap().len())
        .sum();

    // The killed node held bob's name; it is free once its lease has
    // ended by PostgreSQL's clock (one session per name in the cluster).
    pg.every_lease_ended().await;
    let (_child, addr) = spawn_node_in(Some(cwd.path()), &pg, &nats, files.path(), &[]).await;
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    assert_eq!(bob.user, bob_user);
    let bob_reader = read_and_ack(bob, bob_seen.clone());
    // Every number tried and not answered is sent again.
    let mut expected: [BTreeSet<(u64, Bytes)>; 2] = Default::default();
    for (name, user, sent) in &senders {
        assert_eq!(*sent.surprises.lock().unwrap(), [], "{name}'s answers");
        let mut p = Peer::connect(addr).await;
        p.sign_in(name).await;
        assert_eq!(p.user, *user);
        let answered = sent.answered.lock().unwrap().clone();
        let tried = sent.tried.load(Ordering::SeqCst);
        assert!(
            tried > answered.len() as u64,
            "{name} had requests in flight"
        );
        for n in 1..=tried {
            let body = format!("m{n}");
            let to = n as usize % 2;
            if !answered.contains(&n) {
                p.message([bob_user, carol_user][to], n, &body).await;
            }
            expected[to].insert((*user, Bytes::from(body)));
        }
    }
    let mut carol = Peer::connect(addr).await;
    carol.sign_in("carol").await;
    let carol_reader = read_and_ack(carol, carol_seen.clone());

    // Done when both have seen every message and acknowledged all they
    // were sent: a message stored twice would be in their mailbox, or
    // seen under a second number.
    let db = pg.client().await;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let queued: i64 = db
            .query_one("SELECT count(*) FROM queued", &[])
            .await
            .unwrap()
            .get(0);
        let have = |seen: &Seen| {
            seen.lock()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        if queued == 0 && have(&bob_seen) == expected[0] && have(&carol_seen) == expected[1] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all delivered and acknowledged in time: {queued} queued, bob has {} of {}, carol {} of {}",
            have(&bob_seen).len(),
            expected[0].len(),
            have(&carol_seen).len(),
            expected[1].len(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for seen in [&bob_seen, &carol_seen] {
        for ((from, body), numbers) in seen.lock().unwrap().iter() {
            assert_eq!(numbers.len(), 1, "{from}'s {body:?} came as {numbers:?}");
        }
    }
    assert!(answered_before >= 400);
    bob_reader.abort();
    carol_reader.abort();
    // The server kept its state in the database, not in its directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

/// One Prometheus sample's value from a `/metrics` page of `addr`, once it
/// satisfies `ok`; gauges are sampled every few seconds, so this scrapes
/// again until then, within a bound.
async fn metric_once(addr: &str, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let bound = patience() * 3;
    let found = tokio::time::timeout(bound, async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let get = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let mut raw = Vec::new();
                if s.write_all(get).await.is_ok() && s.read_to_end(&mut raw).await.is_ok() {
                    let page = String::from_utf8_lossy(&raw).to_string();
                    let value = page
                        .lines()
                        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok());
                    if let Some(v) = value.filter(|v| ok(*v)) {
                        return v;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{series} never as wanted within {bound:?}"))
}

/// The store's metrics (batch sizes, commit latency, mailbox depth) are
/// recorded on PostgreSQL as on SQLite, and the bus's publications.
#[tokio::test]
async fn metrics_show_the_postgres_stores_batches_and_mailboxes() {
    let pg = PgServer::start().await;
    let nats = NatsServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", devservices::free_port());
    let flags = ["--metrics-listen", metrics.as_str()];
    let (_child, addr) = spawn_node_in(Some(cwd.path()), &pg, &nats, files.path(), &flags).await;
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    let bob_user = bob.user;
    drop(bob);
    let mut alice = Peer::connect(addr).await;
    alice.sign_in("alice").await;
    for n in 1..=3 {
        alice.message(bob_user, n, "hello").await;
    }
    metric_once(&metrics, "chat_mailbox_messages", |v| v == 3.0).await;
    // Bob is not on a connection here: each is published for the server
    // that may have him.
    metric_once(&metrics, "chat_bus_published_total{kind=\"direct\"}", |v| {
        v == 3.0
    })
    .await;
    metric_once(&metrics, "chat_store_batch_size_count", |v| v >= 1.0).await;
    metric_once(&metrics, "chat_store_commit_seconds_count", |v| v >= 1.0).await;
}
