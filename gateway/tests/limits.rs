//! The gateway under abuse: idle HTTP connections and too many tunnels
//! from one address.

mod common;

use std::time::Duration;

use common::{patience, TestGateway, WsPeer};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

/// Reads until the gateway closes the connection; fails the test if it
/// is still open after `patience()`. Returns what was read.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(patience(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the gateway kept an idle connection open for {:?}",
                patience()
            ),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let gw = TestGateway::start_with(|c| c.header_read_timeout = 0.5).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_connection_that_sends_half_a_request_is_closed() {
    let gw = TestGateway::start_with(|c| c.header_read_timeout = 0.5).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s).await;
}

/// Opens a tunnel, or returns the HTTP status it was refused with.
async fn open(gw: &TestGateway) -> Result<WsPeer, u16> {
    match tokio::time::timeout(patience(), WsPeer::connect(&gw.url(), None)).await {
        Ok(Ok(peer)) => Ok(peer),
        Ok(Err(tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("expected a tunnel or an HTTP refusal, got {e}"),
        Err(_) => panic!("no answer to the handshake within {:?}", patience()),
    }
}

#[tokio::test]
async fn tunnels_per_address_are_capped_with_429_and_freed_on_close() {
    let gw = TestGateway::start_with(|c| c.max_tunnels_per_ip = 2).await;
    let _a = open(&gw).await.unwrap();
    let mut b = open(&gw).await.unwrap();
    assert_eq!(open(&gw).await.err(), Some(429));

    // Close one, and wait for the gateway's close frame and the end of
    // the stream.
    b.ws.close(None).await.unwrap();
    tokio::time::timeout(patience(), async { while b.ws.next().await.is_some() {} })
        .await
        .unwrap();
    // The slot is freed when the tunnel's task ends, just after the close
    // handshake: poll until a new tunnel is accepted.
    let mut c = tokio::time::timeout(patience(), async {
        loop {
            match open(&gw).await {
                Ok(peer) => return peer,
                Err(429) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(status) => panic!("refused with {status}"),
            }
        }
    })
    .await
    .expect("the closed tunnel's slot was never freed");
    c.sign_in("carol").await;
}

#[tokio::test]
async fn tunnels_opened_too_fast_are_refused_with_429() {
    let gw = TestGateway::start_with(|c| {
        c.max_tunnels_per_ip = 0;
        c.tunnel_rate = 0.001;
        c.tunnel_burst = 2.0;
    })
    .await;
    let _a = open(&gw).await.unwrap();
    let _b = open(&gw).await.unwrap();
    assert_eq!(open(&gw).await.err(), Some(429));
}

#[tokio::test]
async fn exempt_addresses_are_not_limited() {
    let gw = TestGateway::start_with(|c| {
        c.max_tunnels_per_ip = 1;
        c.tunnel_limits_exempt = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let _a = open(&gw).await.unwrap();
    let _b = open(&gw).await.unwrap();
}
