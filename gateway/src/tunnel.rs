//! The byte pumps between one WebSocket and one TCP connection.
//!
//! Each direction reads one buffer and awaits its write on the other side
//! before reading again, so a slow side slows the other instead of filling
//! a queue: a browser that stops reading stops the gateway's TCP reads, and
//! the chat server then cuts it off by its own slow-reader limit. Every
//! WebSocket send, and the closing handshake, has a deadline
//! ([`TunnelOptions::send_timeout`]): a browser that stops reading ends its
//! tunnel ([`End::BrowserStalled`]) and frees its slot. Bytes
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
    /// The browser stopped reading: a send did not complete within the
    /// send timeout.
    BrowserStalled,
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
            End::BrowserClosed
            | End::BrowserError(_)
            | End::BrowserSilent
            | End::BrowserStalled => return None,
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
    /// Longest one WebSocket send, and the closing handshake, may take.
    pub send_timeout: Duration,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        Self {
            // A quarter of a 256-chunk download window per message keeps
            // the browser and the server working at once (measured: 129-143
            // MB/s against 112-129 MB/s with 64 KiB).
            read_buffer: 16 * 1024,
            ping_interval: Duration::from_secs(20),
            send_timeout: Duration::from_secs(10),
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
    // The close frame and the close handshake share one deadline: a
    // browser that does not read must not hold the tunnel open.
    let close = async {
        if let Some(frame) = end.close_frame() {
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(opts.send_timeout, close).await;
    let _ = tcp_write.shutdown().await;
    Report {
        to_server: up_bytes.load(Ordering::Relaxed),
        to_browser: down_bytes.load(Ordering::Relaxed),
        end,
    }
}

/// Sends one message within the send timeout.
async fn send_within<S>(sink: &mut S, msg: Message, timeout: Duration) -> Result<(), End>
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(End::BrowserError(e.to_string())),
        Err(_) => Err(End::BrowserStalled),
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
                    if let Err(end) = send_within(sink, Message::Binary(data), opts.send_timeout).await {
                        return end;
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
                let ping = Message::Ping(Default::default());
                if let Err(end) = send_within(sink, ping, opts.send_timeout).await {
                    return end;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pumps driven in memory: a channel pair stands in for the
    //! WebSocket and a duplex pipe for the TCP connection.

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;

    /// The gateway's side of a fake WebSocket.
    struct FakeWs {
        to_browser: Option<mpsc::UnboundedSender<Message>>,
        from_browser: mpsc::UnboundedReceiver<Result<Message, String>>,
        /// A browser that stopped reading: the sink is never ready again.
        stalled: bool,
    }

    impl Sink<Message> for FakeWs {
        type Error = String;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            if self.stalled {
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), String> {
            match &self.to_browser {
                Some(tx) => tx.send(item).map_err(|e| e.to_string()),
                None => Err("closed".into()),
            }
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            if self.stalled {
                return Poll::Pending;
            }
            self.to_browser = None;
            Poll::Ready(Ok(()))
        }
    }

    impl Stream for FakeWs {
        type Item = Result<Message, String>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.from_browser.poll_recv(cx)
        }
    }

    struct Harness {
        browser_tx: mpsc::UnboundedSender<Result<Message, String>>,
        browser_rx: mpsc::UnboundedReceiver<Message>,
        server: tokio::io::DuplexStream,
        tunnel: tokio::task::JoinHandle<Report>,
        shutdown: CancellationToken,
    }

    fn start() -> Harness {
        start_with(TunnelOptions::default(), false)
    }

    fn start_with(opts: TunnelOptions, stalled: bool) -> Harness {
        let (to_browser, browser_rx) = mpsc::unbounded_channel();
        let (browser_tx, from_browser) = mpsc::unbounded_channel();
        let (gateway_side, server) = duplex(1024);
        let (read, write) = tokio::io::split(gateway_side);
        let shutdown = CancellationToken::new();
        let ws = FakeWs {
            to_browser: Some(to_browser),
            from_browser,
            stalled,
        };
        let tunnel = tokio::spawn(run(ws, read, write, opts, shutdown.clone()));
        Harness {
            browser_tx,
            browser_rx,
            server,
            tunnel,
            shutdown,
        }
    }

    /// Awaits `f`, failing the test if it takes more than ten seconds.
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("nothing happened within 10 s")
    }

    fn binary(bytes: &[u8]) -> Result<Message, String> {
        Ok(Message::Binary(bytes.to_vec().into()))
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_unchanged() {
        let mut h = start();
        h.browser_tx.send(binary(&[1, 2, 3])).unwrap();
        h.browser_tx.send(binary(&[4])).unwrap();
        let mut got = [0u8; 4];
        within(h.server.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
        within(h.server.write_all(&[9, 8, 7])).await.unwrap();
        let Some(Message::Binary(data)) = within(h.browser_rx.recv()).await else {
            panic!()
        };
        assert_eq!(&data[..], &[9, 8, 7]);
        drop(h.server);
        let report = within(h.tunnel).await.unwrap();
        assert_eq!(
            (report.to_server, report.to_browser, report.end),
            (4, 3, End::ServerClosed)
        );
        let Some(Message::Close(Some(frame))) = within(h.browser_rx.recv()).await else {
            panic!()
        };
        assert_eq!(frame.code, close_code::NORMAL);
    }

    #[tokio::test]
    async fn a_text_message_ends_the_tunnel_with_1003() {
        let mut h = start();
        h.browser_tx.send(Ok(Message::Text("hi".into()))).unwrap();
        assert_eq!(within(h.tunnel).await.unwrap().end, End::TextMessage);
        let Some(Message::Close(Some(frame))) = within(h.browser_rx.recv()).await else {
            panic!()
        };
        assert_eq!(frame.code, close_code::UNSUPPORTED);
        // The chat server sees the connection end.
        let mut rest = Vec::new();
        within(h.server.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn shutdown_closes_with_going_away() {
        let mut h = start();
        h.shutdown.cancel();
        assert_eq!(within(h.tunnel).await.unwrap().end, End::Shutdown);
        let Some(Message::Close(Some(frame))) = within(h.browser_rx.recv()).await else {
            panic!()
        };
        assert_eq!(frame.code, close_code::AWAY);
    }

    #[tokio::test]
    async fn a_browser_that_closes_closes_the_tcp_side() {
        let mut h = start();
        h.browser_tx.send(Ok(Message::Close(None))).unwrap();
        assert_eq!(within(h.tunnel).await.unwrap().end, End::BrowserClosed);
        let mut rest = Vec::new();
        within(h.server.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_browser_is_dropped_after_two_ping_intervals() {
        let mut h = start();
        // Paused time advances only when every task is idle: pings go out,
        // nothing comes back, and the tunnel gives up.
        let report = tokio::time::timeout(Duration::from_secs(3600), h.tunnel)
            .await
            .expect("a silent browser kept its tunnel for an hour")
            .unwrap();
        assert_eq!(report.end, End::BrowserSilent);
        let mut pings = 0;
        while let Ok(m) = h.browser_rx.try_recv() {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
            }
        }
        assert!(pings >= 2, "{pings} pings");
    }

    #[tokio::test(start_paused = true)]
    async fn a_browser_that_stops_reading_ends_its_tunnel_after_the_send_timeout() {
        let opts = TunnelOptions {
            // Pings far away: the stall is found by the data send alone.
            ping_interval: Duration::from_secs(3600),
            send_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let mut h = start_with(opts, true);
        let started = Instant::now();
        within(h.server.write_all(b"for a browser that does not read"))
            .await
            .unwrap();
        let report = tokio::time::timeout(Duration::from_secs(60), h.tunnel)
            .await
            .expect("the tunnel outlived its send timeout")
            .unwrap();
        assert_eq!(report.end, End::BrowserStalled);
        assert_eq!(report.to_browser, 0);
        // One send timeout for the data, at most one more for the close.
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(10), "{took:?}");
        assert!(took <= Duration::from_secs(21), "{took:?}");
        // The chat server sees its connection end, and nothing reached the browser.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), h.server.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(h.browser_rx.try_recv().is_err());
    }
}
