//! The two ways to reach the server: TCP directly, or a WebSocket through
//! the gateway. Both carry the same byte stream.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Target {
    /// `HOST:PORT` of the chat server.
    Tcp(String),
    /// `ws://HOST:PORT/ws` of a gateway.
    Ws(String),
}

/// Bytes read from TCP at a time, at most. Smaller than it could be on
/// purpose: the answers to one read leave together, so a read of a whole
/// window of download chunks would leave the server idle while they are
/// handled; a quarter of a 256-chunk window keeps both sides busy (64 KiB
/// gave 91-158 MB/s, 16 KiB 228-286 MB/s, 8 KiB 235-241 MB/s).
const READ_BUFFER: usize = 16 * 1024;

/// WebSocket settings. tungstenite zeroes its whole read buffer before
/// every read (128 KiB by default); a smaller one keeps that cheap. The
/// `true` above disables Nagle, as for TCP.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// An open connection.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream, Vec<u8>),
    /// A WebSocket.
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

/// Why a WebSocket handshake failed; for an HTTP refusal (403, 429, 503)
/// the gateway's one-line reason.
fn refusal(url: &str, e: tokio_tungstenite::tungstenite::Error) -> String {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let reason = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            format!("{url}: HTTP {}: {}", resp.status(), reason.trim())
        }
        e => format!("{url}: {e}"),
    }
}

impl Transport {
    /// Connects.
    pub async fn connect(target: &Target) -> io::Result<Self> {
        match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Transport::Tcp(s, vec![0; READ_BUFFER]))
            }
            Target::Ws(url) => {
                let (ws, _) = tokio_tungstenite::connect_async_with_config(
                    url.as_str(),
                    Some(ws_config()),
                    true,
                )
                .await
                .map_err(|e| io::Error::other(refusal(url, e)))?;
                Ok(Transport::Ws(Box::new(ws)))
            }
        }
    }

    /// Sends bytes.
    pub async fn send(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Transport::Tcp(s, _) => s.write_all(&bytes).await,
            Transport::Ws(ws) => ws
                .send(Message::Binary(bytes))
                .await
                .map_err(io::Error::other),
        }
    }

    /// Receives the next bytes; `None` when the peer closed.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Transport::Tcp(s, buf) => {
                let n = s.read(buf).await?;
                Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
            }
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("gateway closed: {why}"),
                        ));
                    }
                    Some(Ok(_)) => continue,
                }
            },
        }
    }
}
