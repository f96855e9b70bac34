//! The two ways to reach the server: TCP directly, or a WebSocket through
//! the gateway. Both carry the same byte stream.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where to connect.
#[derive(Clone)]
pub enum Target {
    /// `HOST:PORT` of the chat server.
    Tcp(String),
    /// `HOST:PORT` of a chat server with TLS on its port.
    Tls(String, Tls),
    /// `ws://HOST:PORT/ws` of a gateway.
    Ws(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Tls(a, _) => write!(f, "tls://{a}"),
            Target::Ws(u) => f.write_str(u),
        }
    }
}

/// How to check a chat server's certificate.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl Tls {
    /// Trusts the certificates in the PEM file `ca` (a private CA, or a
    /// self-signed server), or, without one, the usual public authorities.
    pub fn new(ca: Option<&Path>) -> io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
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
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>, Vec<u8>),
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
            Target::Tls(addr, tls) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| io::Error::other(format!("{host}: {e}")))?;
                let stream = tls.connector.connect(name, s).await?;
                Ok(Transport::Tls(Box::new(stream), vec![0; READ_BUFFER]))
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
            Transport::Tls(s, _) => {
                s.write_all(&bytes).await?;
                s.flush().await
            }
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
            Transport::Tls(s, buf) => {
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
