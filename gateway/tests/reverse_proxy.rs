//! The shipped reverse-proxy configurations (deploy/nginx/chat.conf and
//! deploy/caddy/Caddyfile), run as shipped by the real nginx and Caddy in
//! front of a gateway under `/chat/`, with TLS at the proxy:
//!
//! - the app loads;
//! - a browser-style client signs in over the WebSocket;
//! - the chat server sees each client's own address through both hops
//!   (proxy → gateway by `X-Forwarded-For`, gateway → server by a PROXY
//!   header), shown by its per-address limit;
//! - a tunnel stays up through 90 s of silence.
//!
//! They need nginx and Caddy installed, which `cargo xtask test` does, and
//! take 90 s, so they are ignored by a plain `cargo test`; xtask runs them
//! with `--ignored`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{patience, TestGateway};
use futures_util::{SinkExt, StreamExt};
use proto::{Decoder, ErrorCode, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a tunnel must stay up with nothing crossing it
/// (`CHAT_TEST_SILENCE_SECS` shortens it to try the test by hand).
fn silence() -> Duration {
    let secs = std::env::var("CHAT_TEST_SILENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    Duration::from_secs(secs)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Replaces `from` in the shipped file, which must contain it: a test that
/// silently stopped editing the file would test something else.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer has `{from}`"
    );
    text.replace(from, to)
}

/// A proxy process, killed when dropped.
struct Proxy {
    child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

struct Cert {
    pem: PathBuf,
    key: PathBuf,
    der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

fn cert(dir: &Path) -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (pem, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&pem, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    Cert {
        pem,
        key,
        der: c.cert.der().clone(),
    }
}

/// Waits until `addr` accepts connections, or the process has ended;
/// `log` is where it writes why.
async fn wait_listening(
    child: &mut tokio::process::Child,
    addr: SocketAddr,
    what: &str,
    log: &Path,
) {
    tokio::time::timeout(patience(), async {
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{what} ended at start: {status}\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not listen on {addr} within {:?}", patience()));
}

async fn nginx(gateway: SocketAddr, cert: &Cert) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = devservices::free_port();
    let shipped = std::fs::read_to_string(repo().join("deploy/nginx/chat.conf")).unwrap();
    let conf = edit(
        &shipped,
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{port} ssl http2;"),
    );
    let conf = edit(&conf, "listen [::]:443 ssl http2;", "");
    let conf = edit(
        &conf,
        "listen 80;",
        &format!("listen 127.0.0.1:{};", devservices::free_port()),
    );
    let conf = edit(&conf, "listen [::]:80;", "");
    let conf = edit(
        &conf,
        "server 127.0.0.1:8080;",
        &format!("server {gateway};"),
    );
    let conf = edit(
        &conf,
        "/etc/letsencrypt/live/chat.example.org/fullchain.pem",
        &cert.pem.display().to_string(),
    );
    let conf = edit(
        &conf,
        "/etc/letsencrypt/live/chat.example.org/privkey.pem",
        &cert.key.display().to_string(),
    );
    let d = dir.path().display();
    std::fs::write(dir.path().join("chat.conf"), conf).unwrap();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             user root;\nevents {{ worker_connections 256; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n include {d}/chat.conf;\n}}\n"
        ),
    )
    .unwrap();
    let conf = dir.path().join("nginx.conf");
    let check = std::process::Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        .output()
        .expect("nginx is not installed (cargo xtask test installs it)");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut child = tokio::process::Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        // One process (master_process off), so that killing it leaves no
        // worker behind holding the test's output open.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(&mut child, addr, "nginx", &dir.path().join("error.log")).await;
    Proxy {
        child,
        addr,
        _dir: dir,
    }
}

async fn caddy(gateway: SocketAddr, cert: &Cert) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = devservices::free_port();
    let shipped = std::fs::read_to_string(repo().join("deploy/caddy/Caddyfile")).unwrap();
    let site = edit(
        &shipped,
        "chat.example.org {",
        &format!(
            "https://localhost:{port} {{\n\ttls {} {}",
            cert.pem.display(),
            cert.key.display()
        ),
    );
    let site = edit(
        &site,
        "reverse_proxy 127.0.0.1:8080",
        &format!("reverse_proxy {gateway}"),
    );
    let d = dir.path().display();
    std::fs::write(dir.path().join("chat.caddy"), site).unwrap();
    std::fs::write(
        dir.path().join("Caddyfile"),
        format!(
            "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {d}/data\n\
             \tskip_install_trust\n}}\nimport {d}/chat.caddy\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("caddy.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("caddy is not installed (cargo xtask test installs it)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(&mut child, addr, "caddy", &dir.path().join("caddy.log")).await;
    Proxy {
        child,
        addr,
        _dir: dir,
    }
}

/// A TLS connection to the proxy from `source` (a loopback address of
/// its own, so each test client has an address the server can tell apart).
async fn tls_from(source: [u8; 4], proxy: SocketAddr, cert: &Cert) -> TlsStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let tcp = tokio::time::timeout(patience(), socket.connect(proxy))
        .await
        .unwrap()
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio::time::timeout(
        patience(),
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap()
}

/// GET over HTTPS; the status and the body.
async fn https_get(proxy: &Proxy, cert: &Cert, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut tls = tls_from([127, 0, 0, 2], proxy.addr, cert).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n{extra}\r\n",
        proxy.addr.port()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A proxy may end TLS without close_notify; what was read counts.
    let _ = tokio::time::timeout(patience(), tls.read_to_end(&mut raw))
        .await
        .expect("no whole answer in time");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

struct Client {
    ws: Wss,
    decoder: Decoder,
    user: u64,
    session: u64,
}

impl Client {
    async fn connect(source: [u8; 4], proxy: &Proxy, cert: &Cert) -> Self {
        let tls = tls_from(source, proxy.addr, cert).await;
        let url = format!("wss://localhost:{}/chat/ws", proxy.addr.port());
        let (ws, _) = tokio::time::timeout(patience(), tokio_tungstenite::client_async(url, tls))
            .await
            .unwrap()
            .unwrap();
        Self {
            ws,
            decoder: Decoder::new(),
            user: 0,
            session: 0,
        }
    }

    async fn send(&mut self, p: Packet) {
        let bytes = p.to_bytes().unwrap();
        tokio::time::timeout(patience(), self.ws.send(Message::Binary(bytes.into())))
            .await
            .unwrap()
            .unwrap();
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.next_packet().unwrap() {
                return p;
            }
            match tokio::time::timeout(patience(), self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.decoder.feed(&b),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    async fn sign_in(&mut self, name: &str) -> Packet {
        self.send(Packet::SessionRequest { name: name.into() })
            .await;
        let p = self.recv().await;
        if let Packet::SessionCookie { user, session } = p {
            (self.user, self.session) = (user, session);
        }
        p
    }
}

/// Everything the issue asks of a proxy, through `start`.
async fn round_trip<F, Fut>(start: F)
where
    F: FnOnce(SocketAddr, Arc<Cert>) -> Fut,
    Fut: std::future::Future<Output = Proxy>,
{
    // RUST_LOG=debug shows the server's and the gateway's log.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let cert = Arc::new(cert(dir.path()));
    // The chat server: one connection per client address, loopback not
    // exempt, the gateway trusted to name its clients; sessions outlive
    // the silence, so only the proxy's timeouts are on trial.
    let mut chat = server::Config::for_data_dir(dir.path().join("data"));
    chat.sync = "normal".into();
    chat.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    chat.max_connections_per_ip = 1;
    chat.ip_limits_exempt = vec!["192.0.2.1/32".parse().unwrap()];
    chat.session_timeout = 600.0;
    let srv = server::start(chat).await.unwrap();
    let remote = srv.local_addr().to_string();
    // The gateway as the shipped files describe it, with pings rarer than
    // the silence, so that nothing crosses the proxy meanwhile.
    let gw = TestGateway::start_with(|c| {
        c.server = vec![remote.clone()];
        c.proxy_protocol = true;
        c.trusted_proxy = vec!["127.0.0.1/32".parse().unwrap()];
        c.base_path = "/chat/".into();
        c.web_dir = None;
        c.ping_interval = silence().as_secs_f64() + 30.0;
    })
    .await;
    let proxy = start(gw.addr, cert.clone()).await;

    // The app loads.
    let (status, _, body) = https_get(&proxy, &cert, "/chat/", "").await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body).to_string();
    if std::env::var_os("CHAT_EXPECT_WEB_APP").is_some() || page.contains(".wasm") {
        assert!(page.contains(r#"<base href="/chat/">"#), "{page}");
        let wasm = page
            .split(['"', '\''])
            .find(|s| s.ends_with("_bg.wasm"))
            .expect("a wasm link")
            .trim_start_matches("./");
        let (status, head, _) = https_get(
            &proxy,
            &cert,
            &format!("/chat/{wasm}"),
            "Accept-Encoding: gzip\r\n",
        )
        .await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: application/wasm"), "{head}");
    } else {
        assert!(page.contains("not built"), "{page}");
    }
    let (status, _, _) = https_get(&proxy, &cert, "/chat/healthz", "").await;
    assert_eq!(status, 200);

    // Two clients from two addresses sign in; a second connection from
    // the first address is over the server's limit of one per address.
    let mut alice = Client::connect([127, 0, 0, 2], &proxy, &cert).await;
    assert!(matches!(
        alice.sign_in("alice").await,
        Packet::SessionCookie { .. }
    ));
    let mut bob = Client::connect([127, 0, 0, 3], &proxy, &cert).await;
    assert!(matches!(
        bob.sign_in("bob").await,
        Packet::SessionCookie { .. }
    ));
    let mut again = Client::connect([127, 0, 0, 2], &proxy, &cert).await;
    match again.recv().await {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::TooManyConnections),
        p => panic!("the server did not see the client's own address: {p:?}"),
    }

    // Silence, then both tunnels still carry a message.
    tokio::time::sleep(silence()).await;
    let session = alice.session;
    alice
        .send(Packet::MessageRequest {
            session,
            to: bob.user,
            message: 1,
            body: bytes::Bytes::from_static(b"still there?"),
        })
        .await;
    loop {
        match bob.recv().await {
            Packet::IncomingMessage { body, .. } => {
                assert_eq!(&body[..], b"still there?");
                break;
            }
            _ => continue,
        }
    }
    drop(proxy.child);
    srv.shutdown().await;
}

#[tokio::test]
#[ignore = "needs nginx and takes 90 s; cargo xtask test runs it"]
async fn nginx_as_shipped_serves_the_app_and_keeps_quiet_tunnels_with_real_addresses() {
    round_trip(|gw, cert| async move { nginx(gw, &cert).await }).await;
}

#[tokio::test]
#[ignore = "needs caddy and takes 90 s; cargo xtask test runs it"]
async fn caddy_as_shipped_serves_the_app_and_keeps_quiet_tunnels_with_real_addresses() {
    round_trip(|gw, cert| async move { caddy(gw, &cert).await }).await;
}
