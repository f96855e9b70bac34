//! The tunnel end to end: a real WebSocket client, a real gateway, a real
//! chat server, all on loopback.

mod common;

use bytes::Bytes;
use common::{TestGateway, WsPeer};
use futures_util::{SinkExt, StreamExt};
use proto::codec::PacketCodec;
use proto::{ErrorCode, Packet};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::Framed;

#[tokio::test]
async fn two_websocket_users_sign_in_and_exchange_a_direct_message() {
    let gw = TestGateway::start().await;
    let mut a = gw.signed_in("alice").await;
    let mut b = gw.signed_in("bob").await;
    let session = a.session;
    a.send(Packet::MessageRequest {
        session,
        to: b.user,
        message: 1,
        body: Bytes::from_static(b"hi bob"),
    })
    .await;
    assert_eq!(a.recv().await, Packet::MessageResponse { message: 1 });
    match b.recv().await {
        Packet::IncomingMessage { from, body, .. } => {
            assert_eq!((from, &body[..]), (a.user, &b"hi bob"[..]))
        }
        p => panic!("{p:?}"),
    }
}

#[tokio::test]
async fn a_websocket_user_and_a_tcp_user_talk_to_each_other() {
    let gw = TestGateway::start().await;
    let mut web = gw.signed_in("browser").await;
    let stream = TcpStream::connect(gw.server_addr()).await.unwrap();
    let mut tcp = Framed::new(stream, PacketCodec);
    tcp.send(Packet::SessionRequest {
        name: "terminal".into(),
    })
    .await
    .unwrap();
    let Some(Ok(Packet::SessionCookie { user, session })) = tcp.next().await else {
        panic!()
    };
    tcp.send(Packet::MessageRequest {
        session,
        to: web.user,
        message: 9,
        body: Bytes::from_static(b"from tcp"),
    })
    .await
    .unwrap();
    assert!(matches!(
        tcp.next().await,
        Some(Ok(Packet::MessageResponse { message: 9 }))
    ));
    let Packet::IncomingMessage {
        from,
        message,
        body,
    } = web.recv().await
    else {
        panic!()
    };
    assert_eq!((from, &body[..]), (user, &b"from tcp"[..]));
    web.send(Packet::IncomingMessageAck { message }).await;
    let ws_session = web.session;
    web.send(Packet::MessageRequest {
        session: ws_session,
        to: user,
        message: 1,
        body: Bytes::from_static(b"from ws"),
    })
    .await;
    assert_eq!(web.recv().await, Packet::MessageResponse { message: 1 });
    let Some(Ok(Packet::IncomingMessage { from, body, .. })) = tcp.next().await else {
        panic!()
    };
    assert_eq!((from, &body[..]), (web.user, &b"from ws"[..]));
}

#[tokio::test]
async fn an_upload_and_a_download_through_the_gateway_match_byte_for_byte() {
    let gw = TestGateway::start().await;
    let mut p = gw.signed_in("files").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: data.len() as u32,
        name: "blob.bin".into(),
    })
    .await;
    let Packet::FileUploadResponse { file, transaction } = p.recv().await else {
        panic!()
    };
    // All chunks in one WebSocket message: the gateway never assumes one
    // packet per message.
    let mut stream = Vec::new();
    for (chunk, bytes) in data.chunks(256).enumerate() {
        Packet::UploadChunkRequest {
            transaction,
            chunk: chunk as u32,
            data: Bytes::copy_from_slice(bytes),
        }
        .encode(&mut stream)
        .unwrap();
    }
    p.send_bytes(&stream).await;
    for _ in data.chunks(256) {
        assert!(matches!(p.recv().await, Packet::UploadChunkResponse { .. }));
    }
    p.send(Packet::FileDownloadRequest { session, file }).await;
    let Packet::FileDownloadResponse { transaction, .. } = p.recv().await else {
        panic!()
    };
    let chunks = data.len().div_ceil(256) as u32;
    let mut requests = Vec::new();
    for chunk in 0..chunks {
        Packet::DownloadChunkRequest { transaction, chunk }
            .encode(&mut requests)
            .unwrap();
    }
    p.send_bytes(&requests).await;
    let mut got = Vec::new();
    for expected in 0..chunks {
        let Packet::DownloadChunkResponse { chunk, data, .. } = p.recv().await else {
            panic!()
        };
        assert_eq!(chunk, expected);
        got.extend_from_slice(&data);
    }
    assert_eq!(got, data);
}

#[tokio::test]
async fn a_stream_split_at_every_byte_boundary_arrives_intact() {
    let gw = TestGateway::start().await;
    let len = Packet::SessionRequest {
        name: "split000".into(),
    }
    .encoded_len();
    for cut in 0..=len {
        // A fresh name each round: the previous tunnel may still be closing.
        let bytes = Packet::SessionRequest {
            name: format!("split{cut:03}"),
        }
        .to_bytes()
        .unwrap();
        let mut p = WsPeer::connect(&gw.url(), None).await.unwrap();
        p.send_bytes(&bytes[..cut]).await;
        p.send_bytes(&bytes[cut..]).await;
        let Packet::SessionCookie { user, session } = p.recv().await else {
            panic!("cut {cut}")
        };
        p.session = session;
        p.user = user;
        assert!(p.users().await.contains(&user), "cut {cut}");
    }
}

#[tokio::test]
async fn packets_sent_one_byte_per_message_are_reassembled() {
    let gw = TestGateway::start().await;
    let mut p = gw.signed_in("bytewise").await;
    let session = p.session;
    let mut bytes = Vec::new();
    Packet::UsersRequest { session }.encode(&mut bytes).unwrap();
    Packet::MessageRequest {
        session,
        to: p.user,
        message: 5,
        body: Bytes::from_static(b"to myself"),
    }
    .encode(&mut bytes)
    .unwrap();
    for b in &bytes {
        p.send_bytes(std::slice::from_ref(b)).await;
    }
    assert_eq!(
        p.recv().await,
        Packet::UsersResponse {
            users: vec![p.user]
        }
    );
    assert_eq!(p.recv().await, Packet::MessageResponse { message: 5 });
    assert!(matches!(
        p.recv().await,
        Packet::IncomingMessage { message: _, .. }
    ));
}

#[tokio::test]
async fn a_text_message_closes_the_websocket_with_1003() {
    let gw = TestGateway::start().await;
    let mut p = gw.ws().await;
    p.ws.send(Message::Text("hello".into())).await.unwrap();
    let frame = p.close_frame().await.unwrap();
    assert_eq!(u16::from(frame.code), 1003);
    assert!(frame.reason.contains("binary"), "{}", frame.reason);
}

#[tokio::test]
async fn a_foreign_origin_is_refused_with_403_and_the_own_origin_accepted() {
    let gw =
        TestGateway::start_with(|c| c.allow_origin = vec!["https://friend.example".into()]).await;
    let err = WsPeer::connect(&gw.url(), Some("https://evil.example"))
        .await
        .err()
        .unwrap();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        e => panic!("expected an HTTP 403, got {e}"),
    }
    let own = format!("http://{}", gw.addr);
    assert!(WsPeer::connect(&gw.url(), Some(&own)).await.is_ok());
    assert!(WsPeer::connect(&gw.url(), Some("https://friend.example"))
        .await
        .is_ok());
}

#[tokio::test]
async fn the_chat_server_stopping_closes_the_websocket_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = server::Config::for_data_dir(data.path());
    cfg.sync = "normal".into();
    let chat = server::start(cfg).await.unwrap();
    let addr = chat.local_addr().to_string();
    let gw = TestGateway::start_with(|c| c.server = vec![addr]).await;
    let mut p = gw.signed_in("alice").await;
    chat.shutdown().await;
    let Packet::Error { code, .. } = p.recv().await else {
        panic!()
    };
    assert_eq!(code, ErrorCode::ShuttingDown);
    let frame = p.close_frame().await.unwrap();
    assert_eq!(u16::from(frame.code), 1000);
    assert!(
        frame.reason.contains("chat server closed"),
        "{}",
        frame.reason
    );
    // With the server gone, upgrades are refused cleanly and health says so.
    let err = WsPeer::connect(&gw.url(), None).await.err().unwrap();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        e => panic!("expected an HTTP 503, got {e}"),
    }
    let (status, _, _) = common::http_get(gw.addr, "/healthz", &[]).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn gateway_shutdown_closes_tunnels_with_going_away() {
    let mut gw = TestGateway::start().await;
    let mut p = gw.signed_in("alice").await;
    let running = gw.gateway.take().unwrap();
    let stop = tokio::spawn(running.shutdown());
    let frame = p.close_frame().await.unwrap();
    assert_eq!(u16::from(frame.code), 1001);
    stop.await.unwrap();
}

#[tokio::test]
async fn five_hundred_concurrent_tunnels_each_sign_in_and_are_listed() {
    // All from 127.0.0.1: past the per-address limits.
    let gw = TestGateway::start_with(|c| {
        c.tunnel_limits_exempt = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let mut peers = Vec::new();
    for i in 0..500 {
        peers.push(gw.signed_in(&format!("user{i}")).await);
    }
    let online = peers[0].users().await;
    assert_eq!(online.len(), 500);
    // Each tunnel still answers.
    let results = futures_util::future::join_all(
        peers
            .iter_mut()
            .map(|p| async move { p.users().await.len() }),
    )
    .await;
    assert!(results.iter().all(|n| *n == 500));
}

#[tokio::test]
async fn a_browser_that_stops_reading_is_cut_off_without_growing_memory() {
    let gw = TestGateway::start_with(|c| {
        c.chat.max_queued_bytes = 256 * 1024;
        c.chat.message_rate = 0;
    })
    .await;
    // The sink signs in through the gateway, then never reads again.
    let sink = gw.signed_in("sink").await;
    let to = sink.user;
    let stream = TcpStream::connect(gw.server_addr()).await.unwrap();
    let mut tcp = Framed::new(stream, PacketCodec);
    tcp.send(Packet::SessionRequest {
        name: "flood".into(),
    })
    .await
    .unwrap();
    let Some(Ok(Packet::SessionCookie { user, session })) = tcp.next().await else {
        panic!()
    };
    let body = Bytes::from(vec![b'x'; 60_000]);
    // The gateway's pumps hold one buffer each way, so the bytes pile up in
    // the chat server's outbox until it disconnects the sink: proof that
    // the gateway passed the backpressure on instead of buffering.
    let mut n = 0u64;
    loop {
        n += 1;
        tcp.send(Packet::MessageRequest {
            session,
            to,
            message: n,
            body: body.clone(),
        })
        .await
        .unwrap();
        assert!(matches!(
            tcp.next().await,
            Some(Ok(Packet::MessageResponse { .. }))
        ));
        tcp.send(Packet::UsersRequest { session }).await.unwrap();
        let Some(Ok(Packet::UsersResponse { users })) = tcp.next().await else {
            panic!()
        };
        if users == vec![user] {
            break;
        }
        assert!(n < 5_000, "the non-reading browser was never cut off");
    }
    assert!(
        n * 60_000 < 200 * 1024 * 1024,
        "{n} messages buffered somewhere"
    );
    drop(sink);
}
