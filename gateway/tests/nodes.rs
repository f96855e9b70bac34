//! A gateway in front of several chat server nodes (`--server A,B,...`):
//! tunnels are spread over them, a node that is down is passed over, and
//! `/healthz` reports each one.

mod common;

use std::net::SocketAddr;

use common::{http_get, TestGateway};

/// An address where nothing listens, so connecting is refused: a socket
/// bound there and never listening, held for the test, so that no other
/// test's server can be given the port meanwhile.
fn dead_address() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    (socket, addr)
}

async fn node(dir: &std::path::Path) -> server::RunningServer {
    let mut config = server::Config::for_data_dir(dir);
    config.sync = "normal".into();
    server::start(config).await.unwrap()
}

fn addr(s: &server::RunningServer) -> String {
    s.local_addr().to_string()
}

#[tokio::test]
async fn every_tunnel_reaches_a_live_node_when_one_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let live = node(dir.path()).await;
    let (_held, dead) = dead_address();
    let nodes = vec![dead, addr(&live)];
    let gw = TestGateway::start_with(move |c| c.server = nodes).await;
    // Tunnels start at each node in turn; those that start at the dead one
    // go on to the live one.
    for n in 0..4 {
        let mut peer = gw.signed_in(&format!("user{n}")).await;
        assert!(peer.users().await.contains(&peer.user));
    }
    live.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_each_node() {
    let dir = tempfile::tempdir().unwrap();
    let live = node(dir.path()).await;
    let (_held, dead) = dead_address();
    let nodes = vec![addr(&live), dead.clone()];
    let gw = TestGateway::start_with(move |c| c.server = nodes).await;
    let (status, _, body) = http_get(gw.addr, "/healthz", &[]).await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("degraded: 1 of 2 nodes up\n"), "{body}");
    assert!(
        body.contains(&format!("node {}: ok", addr(&live))),
        "{body}"
    );
    assert!(
        body.contains(&format!("node {dead}: unreachable")),
        "{body}"
    );

    live.shutdown().await;
    let (status, _, body) = http_get(gw.addr, "/healthz", &[]).await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("chat server unreachable\n"), "{body}");
}

#[tokio::test]
async fn when_a_node_stops_new_tunnels_go_to_the_others() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (node(da.path()).await, node(db.path()).await);
    let b_addr: SocketAddr = b.local_addr();
    let nodes = vec![addr(&a), addr(&b)];
    let gw = TestGateway::start_with(move |c| c.server = nodes).await;
    let _early = gw.signed_in("early").await;
    a.shutdown().await;
    for n in 0..3 {
        let mut peer = gw.signed_in(&format!("later{n}")).await;
        assert!(peer.users().await.contains(&peer.user));
    }
    let (status, _, body) = http_get(gw.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(&format!("node {b_addr}: ok")));
    b.shutdown().await;
}
