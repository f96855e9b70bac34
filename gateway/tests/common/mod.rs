//! A real gateway with its embedded chat server on port 0, and a
//! packet-level WebSocket test client.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::{GatewayConfig, RunningGateway};
use proto::{Decoder, Packet};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub fn patience() -> Duration {
    devservices::patience()
}

pub struct TestGateway {
    pub gateway: Option<RunningGateway>,
    pub addr: SocketAddr,
    pub data: TempDir,
    pub web: TempDir,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let _ = rlimit::increase_nofile_limit(8192);
        let data = tempfile::tempdir().unwrap();
        let web = tempfile::tempdir().unwrap();
        std::fs::write(
            web.path().join("index.html"),
            "<!doctype html><title>chat</title>",
        )
        .unwrap();
        let mut config = GatewayConfig::for_tests(data.path(), web.path());
        config.chat.sync = "normal".into();
        tweak(&mut config);
        let gateway = gateway::start(config).await.unwrap();
        Self {
            addr: gateway.local_addr(),
            gateway: Some(gateway),
            data,
            web,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn server_addr(&self) -> String {
        self.gateway.as_ref().unwrap().server_addr().to_owned()
    }

    pub async fn ws(&self) -> WsPeer {
        WsPeer::connect(&self.url(), None).await.unwrap()
    }

    pub async fn signed_in(&self, name: &str) -> WsPeer {
        let mut p = self.ws().await;
        p.sign_in(name).await;
        p
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct WsPeer {
    pub ws: Ws,
    pub decoder: Decoder,
    pub user: u64,
    pub session: u64,
}

impl WsPeer {
    /// Connects, with an `Origin` header if given; an HTTP refusal is an Err.
    pub async fn connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        match origin {
            Some(o) => Self::connect_with(url, &[("origin", o)]).await,
            None => Self::connect_with(url, &[]).await,
        }
    }

    /// Connects with these extra request headers.
    pub async fn connect_with(
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        for (name, value) in headers {
            req.headers_mut().append(*name, value.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self {
            ws,
            decoder: Decoder::new(),
            user: 0,
            session: 0,
        })
    }

    pub async fn send(&mut self, p: Packet) {
        self.ws
            .send(Message::Binary(Bytes::from(p.to_bytes().unwrap())))
            .await
            .unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap();
    }

    /// The next packet, reading as many WebSocket messages as it takes.
    pub async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.next_packet().unwrap() {
                return p;
            }
            match tokio::time::timeout(patience(), self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.decoder.feed(&b),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("expected binary data, got {other:?}"),
                Err(_) => panic!("no packet within {:?}", patience()),
            }
        }
    }

    /// Waits for the close frame and returns it.
    pub async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(patience(), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("websocket failed before closing: {e}"),
                Ok(None) => return None,
                Err(_) => panic!("not closed within {:?}", patience()),
            }
        }
    }

    pub async fn sign_in(&mut self, name: &str) {
        self.send(Packet::SessionRequest { name: name.into() })
            .await;
        match self.recv().await {
            Packet::SessionCookie { user, session } => {
                self.user = user;
                self.session = session;
            }
            p => panic!("sign-in failed: {p:?}"),
        }
    }

    /// Expects an incoming message: (from, delivery number, body).
    pub async fn incoming(&mut self) -> (u64, u64, Bytes) {
        match self.recv().await {
            Packet::IncomingMessage {
                from,
                message,
                body,
            } => (from, message, body),
            p => panic!("expected an incoming message, got {p:?}"),
        }
    }

    pub async fn ack(&mut self, message: u64) {
        self.send(Packet::IncomingMessageAck { message }).await;
    }

    /// Sends a direct message and expects its answer next.
    pub async fn message(&mut self, to: u64, message: u64, body: &str) {
        let session = self.session;
        self.send(Packet::MessageRequest {
            session,
            to,
            message,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
        .await;
        assert_eq!(self.recv().await, Packet::MessageResponse { message });
    }

    /// Uploads `data` a chunk at a time; returns the file number.
    pub async fn upload(&mut self, name: &str, data: &[u8]) -> u64 {
        let session = self.session;
        self.send(Packet::FileUploadRequest {
            session,
            size: data.len() as u32,
            name: name.into(),
        })
        .await;
        let (file, transaction) = match self.recv().await {
            Packet::FileUploadResponse { file, transaction } => (file, transaction),
            p => panic!("upload refused: {p:?}"),
        };
        for (chunk, part) in data.chunks(256).enumerate() {
            let chunk = chunk as u32;
            self.send(Packet::UploadChunkRequest {
                transaction,
                chunk,
                data: Bytes::copy_from_slice(part),
            })
            .await;
            match self.recv().await {
                Packet::UploadChunkResponse { chunk: c, .. } if c == chunk => {}
                p => panic!("expected chunk {chunk}'s answer, got {p:?}"),
            }
        }
        file
    }

    /// Downloads file `file` of `size` bytes a chunk at a time.
    pub async fn download(&mut self, file: u64, size: usize) -> Vec<u8> {
        let session = self.session;
        self.send(Packet::FileDownloadRequest { session, file })
            .await;
        let transaction = match self.recv().await {
            Packet::FileDownloadResponse { transaction, .. } => transaction,
            p => panic!("download refused: {p:?}"),
        };
        let mut out = Vec::new();
        for chunk in 0..(size as u32).div_ceil(256) {
            self.send(Packet::DownloadChunkRequest { transaction, chunk })
                .await;
            match self.recv().await {
                Packet::DownloadChunkResponse { data, .. } => out.extend_from_slice(&data),
                p => panic!("expected chunk {chunk}, got {p:?}"),
            }
        }
        out
    }

    pub async fn users(&mut self) -> Vec<u64> {
        let session = self.session;
        self.send(Packet::UsersRequest { session }).await;
        loop {
            match self.recv().await {
                Packet::UsersResponse { users } => return users,
                Packet::IncomingMessage { .. } => continue,
                p => panic!("expected users, got {p:?}"),
            }
        }
    }
}

/// Plain HTTP/1.1 GET; returns the status line, headers (lowercased
/// names) and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(patience(), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
