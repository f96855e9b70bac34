//! A port picked free can be taken by another process before the service
//! binds it. A service started again (whose URL the servers hold) waits
//! for its own port to be free again instead of failing.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use devservices::nats::NatsServer;
use devservices::patience;
use devservices::postgres::PgServer;

/// Holds `port` from now until the service's start has begun, and a
/// moment more.
fn hold(
    port: u16,
) -> (
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    let (started, rx) = tokio::sync::oneshot::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = rx.blocking_recv();
        std::thread::sleep(Duration::from_millis(300));
        drop(taken);
    });
    (holder, started)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL")
}

#[tokio::test]
async fn nats_started_again_waits_for_its_port() {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    nats.kill();
    let (holder, started) = hold(port_of(&url));
    let _ = started.send(());
    tokio::time::timeout(3 * patience(), nats.start_again())
        .await
        .expect("started in time");
    assert_eq!(nats.url(), url, "on its own port");
    holder.join().unwrap();
    // NATS itself answers there, not the socket that held the port.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port_of(&url)))
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        patience(),
        tokio::io::BufReader::new(stream).read_line(&mut line),
    )
    .await
    .expect("a greeting in time")
    .unwrap();
    assert!(line.starts_with("INFO "), "{line}");
}

#[tokio::test]
async fn postgres_started_again_waits_for_its_port() {
    let mut pg = PgServer::start().await;
    let url = pg.url();
    pg.stop().await;
    let (holder, started) = hold(port_of(&url));
    let _ = started.send(());
    tokio::time::timeout(3 * patience(), pg.start_again())
        .await
        .expect("started in time");
    assert_eq!(pg.url(), url, "on its own port");
    let client = pg.client().await;
    client.simple_query("SELECT 1").await.expect("it answers");
    holder.join().unwrap();
}
