//! The byte pumps between one WebSocket and one TCP connection.
//!
//! Each direction reads one buffer and awaits its write on the other side
//! before reading again, so a slow side slows the other instead of filling
//! a queue: a browser that stops reading stops the gateway's TCP reads, and
//! the chat server then cuts it off by its own slow-reader limit. Bytes
//! pass unchanged; packet boundaries are the endpoints' business.
//!
//! The pumps are generic over the WebSocket's `Sink`/`Stream` and the TCP
//! halves, so they can be driven by channels and in-memory pipes as well.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message};
use bytes::BytesMut;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How the tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The browser closed the WebSocket.
    BrowserClosed,
    /// The WebSocket failed (reset, protocol error, message too large).
    BrowserError(String),
    /// The browser sent a text message.
    TextMessage,
    /// The browser stopped answering pings.
    BrowserSilent,
    /// The chat server closed the TCP connection.
    ServerClosed,
    /// The TCP connection failed.
    ServerError(String),
    /// The gateway is shutting down.
    Shutdown,
}

impl End {
    /// The close frame to send the browser, if it can still receive one.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::BrowserClosed | End::BrowserError(_) | End::BrowserSilent => return None,
            End::TextMessage => (close_code::UNSUPPORTED, "binary messages only".to_owned()),
            End::ServerClosed => (
                close_code::NORMAL,
                "chat server closed the connection".to_owned(),
            ),
            End::ServerError(e) => (
                close_code::ERROR,
                format!("chat server connection failed: {e}"),
            ),
            End::Shutdown => (close_code::AWAY, "gateway shutting down".to_owned()),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

/// Settings of one tunnel.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// Bytes read from TCP at a time, at most; also the largest WebSocket
    /// message the gateway sends.
    pub read_buffer: usize,
    /// Interval of WebSocket pings; two silent intervals end the tunnel.
    pub ping_interval: Duration,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        Self {
            read_buffer: 64 * 1024,
            ping_interval: Duration::from_secs(20),
        }
    }
}

/// What a tunnel did, for the access log.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes from the browser to the chat server.
    pub to_server: u64,
    /// Bytes from the chat server to the browser.
    pub to_browser: u64,
    /// How it ended.
    pub end: End,
}

/// Pumps bytes both ways until either side ends, then closes the other
/// with a close code and a reason the browser can show.
pub async fn run<WS, E, R, W>(
    ws: WS,
    tcp_read: R,
    tcp_write: W,
    opts: TunnelOptions,
    shutdown: CancellationToken,
) -> Report
where
    WS: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
    <WS as Sink<Message>>::Error: std::fmt::Display,
    E: std::fmt::Display,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let start = Instant::now();
    let last_heard = AtomicU64::new(0);
    let (up_bytes, down_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut tcp_write = tcp_write;
    let end = {
        let up = upstream(&mut stream, &mut tcp_write, start, &last_heard, &up_bytes);
        let down = downstream(&mut sink, tcp_read, &opts, start, &last_heard, &down_bytes);
        tokio::select! {
            end = up => end,
            end = down => end,
            _ = shutdown.cancelled() => End::Shutdown,
        }
    };
    if let Some(frame) = end.close_frame() {
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
    let _ = tcp_write.shutdown().await;
    Report {
        to_server: up_bytes.load(Ordering::Relaxed),
        to_browser: down_bytes.load(Ordering::Relaxed),
        end,
    }
}

fn millis_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Browser → chat server.
async fn upstream<S, E, W>(
    stream: &mut S,
    tcp: &mut W,
    start: Instant,
    last_heard: &AtomicU64,
    bytes: &AtomicU64,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
    W: AsyncWrite + Unpin,
{
    while let Some(msg) = stream.next().await {
        last_heard.store(millis_since(start), Ordering::Relaxed);
        match msg {
            Ok(Message::Binary(data)) => {
                if let Err(e) = tcp.write_all(&data).await {
                    return End::ServerError(e.to_string());
                }
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Ok(Message::Text(_)) => return End::TextMessage,
            Ok(Message::Close(_)) => return End::BrowserClosed,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(e) => return End::BrowserError(e.to_string()),
        }
    }
    End::BrowserClosed
}

/// Chat server → browser, with the pings.
async fn downstream<S, R>(
    sink: &mut S,
    mut tcp: R,
    opts: &TunnelOptions,
    start: Instant,
    last_heard: &AtomicU64,
    bytes: &AtomicU64,
) -> End
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(opts.read_buffer);
    let mut ping = tokio::time::interval_at(start + opts.ping_interval, opts.ping_interval);
    let silent_limit = 2 * opts.ping_interval.as_millis() as u64;
    loop {
        tokio::select! {
            read = tcp.read_buf(&mut buf) => match read {
                Ok(0) => return End::ServerClosed,
                Ok(n) => {
                    // Coalesced reads travel as one message; the receiver
                    // decodes the stream incrementally.
                    let data = buf.split().freeze();
                    if let Err(e) = sink.send(Message::Binary(data)).await {
                        return End::BrowserError(e.to_string());
                    }
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    buf.reserve(opts.read_buffer);
                }
                Err(e) => return End::ServerError(e.to_string()),
            },
            _ = ping.tick() => {
                let silent = millis_since(start).saturating_sub(last_heard.load(Ordering::Relaxed));
                if silent > silent_limit {
                    return End::BrowserSilent;
                }
                if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    return End::BrowserError(e.to_string());
                }
            }
        }
    }
}
