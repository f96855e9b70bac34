//! HTTPS and wss:// with a certificate given by --tls-cert/--tls-key.

mod common;

use std::sync::Arc;

use common::TestGateway;
use futures_util::{SinkExt, StreamExt};
use proto::{Decoder, Packet};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_tunnel_works_over_wss_with_the_given_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let gw = TestGateway::start_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;

    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", gw.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    let hello = Packet::SessionRequest {
        name: "secure".into(),
    }
    .to_bytes()
    .unwrap();
    ws.send(Message::Binary(hello.into())).await.unwrap();
    let mut decoder = Decoder::new();
    let packet = loop {
        if let Some(p) = decoder.next_packet().unwrap() {
            break p;
        }
        match tokio::time::timeout(common::patience(), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(b))) => decoder.feed(&b),
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(packet, Packet::SessionCookie { .. }), "{packet:?}");
}
