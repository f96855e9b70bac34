//! What an admin relies on: the app built into the binary, a base path
//! behind a proxy, and the browser's real address on every hop.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{header, http_get, patience, TestGateway, WsPeer};
use proto::{ErrorCode, Packet};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Starts the real `chat-gateway` binary in an empty working directory
/// and returns it with its HTTP address.
async fn spawn_gateway(
    dir: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .args(["--listen", "127.0.0.1:0", "--chat-listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("CHAT_WEB_DIR")
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = tokio::time::timeout(patience(), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the gateway ended before it listened");
        if let Some(url) = line.strip_prefix("chat-gateway listening on http://") {
            break url.parse().unwrap();
        }
    };
    // Keep reading, so the gateway's later lines have somewhere to go.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn the_built_in_app_is_served_from_an_empty_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = spawn_gateway(dir.path(), &[]).await;
    let (status, headers, body) = http_get(addr, "/", &[]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body).to_string();
    // `cargo xtask test` builds the app before the gateway, and says so.
    let expect_app = std::env::var_os("CHAT_EXPECT_WEB_APP").is_some();
    if !page.contains(".wasm") {
        assert!(!expect_app, "the gateway was built without the app: {page}");
        assert!(page.contains("not built"), "{page}");
        let (status, _, body) = http_get(addr, "/any/page", &[]).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("trunk build"));
        return;
    }
    assert!(page.contains(r#"<base href="/">"#), "{page}");
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let etag = header(&headers, "etag")
        .expect("an ETag on index.html")
        .to_owned();
    let (status, _, body) = http_get(addr, "/", &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));

    let wasm = page
        .split(['"', '\''])
        .find(|s| s.ends_with("_bg.wasm"))
        .expect("a wasm link")
        .trim_start_matches("./");
    let (status, headers, body) =
        http_get(addr, &format!("/{wasm}"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(body.len() > 1000);
    let (status, _, _) = http_get(addr, "/web-0000000000000000.js", &[]).await;
    assert_eq!(status, 404, "a missing asset is not the page");
}

#[tokio::test]
async fn without_the_app_every_page_says_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_path_buf();
    let gw = TestGateway::start_with(move |c| c.web_dir = Some(dir)).await;
    for path in [
        "/",
        "/index.html",
        "/some/page",
        "/web-0123456789abcdef_bg.wasm",
    ] {
        let (status, headers, body) = http_get(gw.addr, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html"));
        let page = String::from_utf8_lossy(&body);
        assert!(page.contains("trunk build --release"), "{path}: {page}");
    }
    // The tunnel works meanwhile.
    let mut alice = gw.signed_in("alice").await;
    assert!(alice.users().await.contains(&alice.user));
}

#[tokio::test]
async fn a_web_dir_never_serves_a_file_outside_itself() {
    let root = tempfile::tempdir().unwrap();
    let web = root.path().join("web");
    std::fs::create_dir(&web).unwrap();
    std::fs::write(web.join("index.html"), "<html><head></head>app</html>").unwrap();
    std::fs::write(root.path().join("secret.txt"), "the secret").unwrap();
    let gw = TestGateway::start_with(move |c| c.web_dir = Some(web)).await;
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "//secret.txt",
    ] {
        let (_, _, body) = http_get(gw.addr, path, &[]).await;
        assert!(
            !String::from_utf8_lossy(&body).contains("the secret"),
            "{path} served a file outside the web directory"
        );
    }
}

#[tokio::test]
async fn the_page_tells_the_app_how_much_history_to_keep() {
    let gw = TestGateway::start_with(|c| c.history_messages = 42).await;
    let (status, _, body) = http_get(gw.addr, "/", &[]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body).to_string();
    assert!(
        page.contains(r#"<meta name="chat-history-messages" content="42">"#),
        "{page}"
    );
}

#[tokio::test]
async fn under_a_base_path_the_app_the_tunnel_and_health_are_below_it() {
    let gw = TestGateway::start_with(|c| c.base_path = "/chat/".into()).await;
    let (status, _, body) = http_get(gw.addr, "/chat/", &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(r#"<base href="/chat/">"#));
    let (status, _, _) = http_get(gw.addr, "/chat/healthz", &[]).await;
    assert_eq!(status, 200);
    for outside in ["/", "/ws", "/healthz", "/chatty/"] {
        let (status, _, _) = http_get(gw.addr, outside, &[]).await;
        assert_eq!(status, 404, "{outside}");
    }
    let (status, headers, _) = http_get(gw.addr, "/chat", &[]).await;
    assert_eq!(
        (status, header(&headers, "location")),
        (308, Some("/chat/"))
    );
    let mut alice = WsPeer::connect(&format!("ws://{}/chat/ws", gw.addr), None)
        .await
        .unwrap();
    alice.sign_in("alice").await;
    assert!(alice.users().await.contains(&alice.user));
}

/// Opens a tunnel as a proxy would, naming a client in `X-Forwarded-For`.
async fn through_proxy(gw: &TestGateway, client: &str) -> Result<WsPeer, u16> {
    let headers = [("x-forwarded-for", client)];
    match tokio::time::timeout(patience(), WsPeer::connect_with(&gw.url(), &headers)).await {
        Ok(Ok(peer)) => Ok(peer),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("expected a tunnel or an HTTP refusal, got {e}"),
        Err(_) => panic!("no answer to the handshake within {:?}", patience()),
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // Untrusted: every tunnel is the test's own address, whatever it says.
    let gw = TestGateway::start_with(|c| c.max_tunnels_per_ip = 1).await;
    let _first = through_proxy(&gw, "203.0.113.1").await.unwrap();
    assert_eq!(through_proxy(&gw, "203.0.113.2").await.err(), Some(429));

    // Trusted: each named client has its own limit.
    let gw = TestGateway::start_with(|c| {
        c.max_tunnels_per_ip = 1;
        c.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let _a = through_proxy(&gw, "203.0.113.1").await.unwrap();
    let _b = through_proxy(&gw, "203.0.113.2").await.unwrap();
    assert_eq!(through_proxy(&gw, "203.0.113.1").await.err(), Some(429));
    // What the client wrote itself, left of the proxy's entry, is ignored.
    assert_eq!(
        through_proxy(&gw, "198.51.100.7, 203.0.113.2").await.err(),
        Some(429)
    );
}

/// Expects the chat server's refusal of a client address over its limit.
async fn refused_as_too_many(peer: &mut WsPeer) {
    match peer.recv().await {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::TooManyConnections),
        p => panic!("expected TOO_MANY_CONNECTIONS, got {p:?}"),
    }
}

#[tokio::test]
async fn the_embedded_server_sees_each_browsers_address() {
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
        c.chat.max_connections_per_ip = 1;
        c.chat.ip_limits_exempt = vec!["192.0.2.1/32".parse().unwrap()];
    })
    .await;
    let mut a = through_proxy(&gw, "203.0.113.1").await.unwrap();
    a.sign_in("alice").await;
    let mut b = through_proxy(&gw, "203.0.113.2").await.unwrap();
    b.sign_in("bob").await;
    let mut again = through_proxy(&gw, "203.0.113.1").await.unwrap();
    refused_as_too_many(&mut again).await;
}

#[tokio::test]
async fn a_remote_server_is_told_each_browsers_address_in_a_proxy_header() {
    let data = tempfile::tempdir().unwrap();
    let mut chat = server::Config::for_data_dir(data.path());
    chat.sync = "normal".into();
    chat.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    chat.max_connections_per_ip = 1;
    chat.ip_limits_exempt = vec!["192.0.2.1/32".parse().unwrap()];
    let srv = server::start(chat).await.unwrap();
    let remote = srv.local_addr().to_string();
    let gw = TestGateway::start_with(|c| {
        c.server = vec![remote.clone()];
        c.proxy_protocol = true;
        c.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    // The health check's connection says LOCAL and is not refused.
    let (status, _, _) = http_get(gw.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let mut a = through_proxy(&gw, "203.0.113.1").await.unwrap();
    a.sign_in("alice").await;
    let mut b = through_proxy(&gw, "[2001:db8::2]:4000").await.unwrap();
    b.sign_in("bob").await;
    let mut again = through_proxy(&gw, "203.0.113.1").await.unwrap();
    refused_as_too_many(&mut again).await;

    // From a trusted address, a connection without the header is closed
    // before anything is read as a packet.
    let mut raw = TcpStream::connect(&remote).await.unwrap();
    let hello = Packet::SessionRequest {
        name: "mallory".into(),
    };
    raw.write_all(&hello.to_bytes().unwrap()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(patience(), raw.read_to_end(&mut got)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "not closed in time");
    assert!(
        got.is_empty(),
        "answered a connection without a PROXY header"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_send_a_proxy_header() {
    let data = tempfile::tempdir().unwrap();
    let mut chat = server::Config::for_data_dir(data.path());
    chat.sync = "normal".into();
    chat.trusted_proxy = vec!["192.0.2.0/24".parse().unwrap()];
    let srv = server::start(chat).await.unwrap();
    let mut raw = TcpStream::connect(srv.local_addr()).await.unwrap();
    let client: SocketAddr = "203.0.113.9:1000".parse().unwrap();
    raw.write_all(&server::proxy_header::encode(client, srv.local_addr()))
        .await
        .unwrap();
    let mut decoder = proto::Decoder::new();
    let mut buf = [0u8; 512];
    let packet = loop {
        if let Some(p) = decoder.next_packet().ok().flatten() {
            break p;
        }
        match tokio::time::timeout(patience(), raw.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("closed without a word"),
            Ok(Ok(n)) => decoder.feed(&buf[..n]),
            other => panic!("no answer: {other:?}"),
        }
    };
    assert!(
        matches!(packet, Packet::Error { .. }),
        "a PROXY header from an untrusted peer must be refused, got {packet:?}"
    );
    srv.shutdown().await;
}

/// The value of the sample `series` on a metrics page, if shown.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_cover_the_gateway_and_its_embedded_server() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: SocketAddr = ([127, 0, 0, 1], devservices::free_port()).into();
    let flags = [
        "--metrics-listen",
        &metrics.to_string(),
        "--public-origin",
        "https://chat.example.org",
    ];
    let (_child, addr) = spawn_gateway(dir.path(), &flags).await;
    let mut alice = WsPeer::connect(&format!("ws://{addr}/ws"), None)
        .await
        .unwrap();
    alice.sign_in("alice").await;
    // A foreign origin is refused, and counted.
    let foreign = WsPeer::connect(&format!("ws://{addr}/ws"), Some("https://evil.example")).await;
    assert!(foreign.is_err());
    let want = [
        ("chat_gateway_tunnels", 1.0),
        ("chat_connections", 1.0),
        (
            r#"chat_gateway_tunnels_refused_total{reason="origin"}"#,
            1.0,
        ),
    ];
    let page = tokio::time::timeout(patience(), async {
        loop {
            let (_, _, body) = http_get(metrics, "/metrics", &[]).await;
            let page = String::from_utf8_lossy(&body).to_string();
            if want.iter().all(|(s, v)| metric(&page, s) == Some(*v)) {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the metrics never showed {want:?}"));
    assert!(page.contains("# TYPE chat_gateway_tunnels gauge"), "{page}");
}
