//! `--metrics-listen`: the real binary serves Prometheus metrics that
//! follow what its clients do.

mod common;

use std::time::Duration;

use common::{patience, pattern, spawn_binary_with, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(patience(), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&raw).to_string()
}

/// The value of the sample `series` (name with its labels), if shown.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until every `(series, value)` is shown; gauges are sampled
/// every few seconds, so this waits for the sample, within a bound.
async fn wait_for(addr: &str, want: &[(&str, f64)]) -> String {
    let bound = patience() * 3;
    tokio::time::timeout(bound, async {
        loop {
            let page = scrape(addr).await;
            if want.iter().all(|(s, v)| value(&page, s) == Some(*v)) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("metrics never showed {want:?} within {bound:?}"))
}

#[tokio::test]
async fn metrics_follow_connections_messages_files_and_the_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", devservices::free_port());
    let (_child, addr) = spawn_binary_with(
        dir.path(),
        &["--metrics-listen", &metrics, "--sync", "normal"],
    )
    .await;
    let mut alice = Peer::connect(addr).await;
    alice.sign_in("alice").await;
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    let bob_user = bob.user;
    // Bob leaves; three messages wait in his mailbox, one is sent twice.
    drop(bob);
    for n in 1..=3 {
        alice.message(bob_user, n, "hello").await;
    }
    alice.message(bob_user, 3, "hello").await;
    let file = alice.upload("notes.txt", &pattern(1000)).await;
    assert_eq!(alice.download(file).await.len(), 1000);

    let page = wait_for(
        &metrics,
        &[
            (r#"chat_messages_received_total{result="stored"}"#, 3.0),
            (r#"chat_messages_received_total{result="duplicate"}"#, 1.0),
            (r#"chat_file_bytes_total{direction="up"}"#, 1000.0),
            (r#"chat_file_bytes_total{direction="down"}"#, 1000.0),
            ("chat_mailbox_messages", 3.0),
            ("chat_sessions_attached", 1.0),
            ("chat_connections", 1.0),
        ],
    )
    .await;
    assert!(page.contains("chat_store_commit_seconds_bucket"), "{page}");
    assert!(value(&page, "chat_store_batch_size_count").is_some_and(|n| n >= 1.0));

    // Bob comes back: the three are redelivered and, acknowledged, leave
    // the mailboxes.
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    for _ in 0..3 {
        let (_, number, _) = bob.incoming().await;
        bob.ack(number).await;
    }
    wait_for(
        &metrics,
        &[
            (r#"chat_deliveries_total{path="redelivery"}"#, 3.0),
            ("chat_mailbox_messages", 0.0),
            ("chat_connections", 2.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(patience(), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the server ended");
            if line.contains("chat server listening") {
                return line;
            }
        }
    })
    .await
    .expect("no log line within the patience");
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains(r#""level":"INFO""#), "{line}");
    assert!(line.contains(r#""addr":"127.0.0.1:"#), "{line}");
}
