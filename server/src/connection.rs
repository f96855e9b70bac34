//! One client connection: a reader that decodes and handles packets in
//! order, and a writer task that drains the connection's [`Outbox`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use proto::{decode_request_from, ErrorCode, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;
use crate::handlers;
use crate::hub::Session;
use crate::observe::names;
use crate::outbox::{Outbox, OutboxReceiver};

/// Bytes read from the socket at a time, at most.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes coalesced into one socket write, at most.
const MAX_BATCH: usize = 64 * 1024;

/// The reader's view of a connection, passed to every handler.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) ctx: Arc<Context>,
    pub(crate) peer: SocketAddr,
    pub(crate) out: Outbox,
    pub(crate) session: Option<Arc<Session>>,
    /// Replies not yet handed to the writer, encoded back to back. Answers
    /// to a run of requests (chunks of a transfer, say) go out as one
    /// buffer in one write, instead of a buffer and a wake-up each.
    replies: Mutex<BytesMut>,
}

impl Connection {
    fn replies(&self) -> std::sync::MutexGuard<'_, BytesMut> {
        self.replies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply; it is written at the next [`Connection::flush`].
    pub(crate) fn reply(&self, packet: Packet) {
        let mut out = self.replies();
        let before = out.len();
        if let Err(e) = packet.encode(&mut *out) {
            out.truncate(before);
            tracing::error!(error = %e, "cannot encode a reply");
        }
    }

    /// Hands the queued replies to the writer. The buffer goes with them,
    /// so an idle connection keeps none.
    pub(crate) fn flush(&self) {
        let mut out = self.replies();
        if !out.is_empty() {
            self.out.send(std::mem::take(&mut *out).freeze());
        }
    }

    /// Queues an ERROR answering a packet of type `request_type`.
    pub(crate) fn error(
        &self,
        request_type: u16,
        code: ErrorCode,
        subject: u64,
        text: impl Into<String>,
    ) {
        let text = text.into();
        tracing::debug!(request_type, %code, subject, %text, "request refused");
        self.reply(Packet::Error {
            request_type,
            code,
            subject,
            text,
        });
    }
}

/// Serves one client until it leaves, breaks the protocol, is told to
/// close, or the server shuts down.
async fn serve<R, W>(
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) where
    R: ReadHalfOf,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let span = match &ctx.lease {
        Some(lease) => tracing::info_span!("conn", node = lease.node(), %peer),
        None => tracing::info_span!("conn", %peer),
    };
    async move {
        tracing::debug!("connected");
        let _open = OpenConnection::new();
        let (out, receiver) = Outbox::new(ctx.config.max_queued_bytes, ctx.budget.clone());
        let write_task = tokio::spawn(write_loop(writer, receiver).in_current_span());
        let mut conn = Connection {
            ctx: ctx.clone(),
            peer,
            out: out.clone(),
            session: None,
            replies: Mutex::new(BytesMut::new()),
        };
        // Boxed and dropped at sign-in, so a signed-in idle connection does
        // not carry a timer.
        let mut sign_in_deadline = Some(Box::pin(tokio::time::sleep(ctx.config.sign_in_timeout())));
        // The read buffer is allocated only while bytes are in it, so an
        // idle connection costs a few hundred bytes, not a buffer.
        let mut buf = BytesMut::new();
        let last: Option<Packet> = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Some(error_packet(0, ErrorCode::ShuttingDown, &ctx.stop_reason())),
                _ = out.closing() => break out.close_reason().map(|(code, text)| error_packet(0, code, &text)),
                _ = async {
                    match &mut sign_in_deadline {
                        Some(deadline) => deadline.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if conn.session.is_none() => {
                    tracing::debug!("no sign-in in time");
                    break Some(error_packet(0, ErrorCode::SignInTimeout, &format!(
                        "no SESSION REQUEST or SESSION PRESERVE within {:.1} s",
                        ctx.config.sign_in_timeout
                    )));
                }
                read = reader.read_into(&mut buf) => {
                    // A node that has lost its lease acts for nobody, even
                    // before its keeper notices (say, just after a pause).
                    if !ctx.serving() {
                        break Some(error_packet(0, ErrorCode::ShuttingDown, &ctx.stop_reason()));
                    }
                    match read {
                        Ok(0) => {
                            if !buf.is_empty() {
                                tracing::debug!(bytes = buf.len(), "closed in the middle of a packet");
                            }
                            break None;
                        }
                        Ok(_) => {
                            // Boxed: handling a packet needs a large future, which an idle
                            // connection should not carry (8.3 -> 7.7 KB per idle session).
                            if let Some(last) = Box::pin(drain_packets(&mut conn, &mut buf)).await {
                                break Some(last);
                            }
                            if buf.is_empty() {
                                buf = BytesMut::new();
                            }
                            if conn.session.is_some() {
                                sign_in_deadline = None;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            break None;
                        }
                    }
                },
            }
        };
        detach(&conn);
        out.finish(last.as_ref());
        // Give the writer a bounded time to flush; a client that does not
        // read cannot hold the task forever.
        let mut write_task = write_task;
        if tokio::time::timeout(ctx.config.write_timeout(), &mut write_task).await.is_err() {
            write_task.abort();
            tracing::debug!("writer did not finish in time");
        }
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await
}

/// Counts a connection in the open-connections gauge while it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!(names::CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS).decrement(1.0);
    }
}

/// Decodes and handles every whole packet in `buf`. Consecutive messages
/// go to the store together and are answered after one commit; replies
/// are flushed after each request, except between chunks of a transfer,
/// whose answers leave together. Returns the ERROR to close with when the
/// stream is corrupt.
async fn drain_packets(conn: &mut Connection, buf: &mut BytesMut) -> Option<Packet> {
    let mut pipeline = handlers::Pipeline::default();
    let end = loop {
        match decode_request_from(buf) {
            Ok(Some(packet)) => {
                if let Some(packet) = pipeline.try_start(conn, packet).await {
                    pipeline.finish(conn).await;
                    let chunk = matches!(
                        packet,
                        Packet::DownloadChunkRequest { .. } | Packet::UploadChunkRequest { .. }
                    );
                    if !chunk {
                        conn.flush();
                    }
                    handlers::handle(conn, packet).await;
                    if !chunk {
                        conn.flush();
                    }
                }
            }
            Ok(None) => {
                pipeline.finish(conn).await;
                break None;
            }
            Err(e) => {
                pipeline.finish(conn).await;
                tracing::info!(error = %e, "protocol error; closing");
                break Some(error_packet(e.request_type(), e.code(), &e.to_string()));
            }
        }
    };
    conn.flush();
    end
}

fn error_packet(request_type: u16, code: ErrorCode, text: &str) -> Packet {
    Packet::Error {
        request_type,
        code,
        subject: 0,
        text: text.to_owned(),
    }
}

/// The session stays live without a connection until it resumes elsewhere
/// or expires.
fn detach(conn: &Connection) {
    if let Some(session) = &conn.session {
        let mut st = session.state();
        if st.conn.as_ref().is_some_and(|c| c.same(&conn.out)) {
            session.set_conn(&mut st, None);
            drop(st);
            // A redelivery to this connection notices it is gone.
            session.acked.notify_waiters();
            let ctx = &conn.ctx;
            if ctx.store.is_shared() {
                // Another node may sign the name in now; a later
                // attachment (a newer epoch) is left alone.
                let (store, node) = (ctx.store.clone(), ctx.node());
                let (user, id) = (session.user, session.id);
                let epoch = session.epoch.load(std::sync::atomic::Ordering::Acquire);
                tokio::spawn(async move {
                    if let Err(e) = store.session_detached(user, id, node, epoch).await {
                        tracing::warn!(error = %e, user, "the name's row was not marked away");
                    }
                });
            }
        }
    }
}

/// The reading half of a client's stream. Each kind of stream has its
/// own, so that a plain connection's task is no larger for TLS's sake.
pub(crate) trait ReadHalfOf: Send + 'static {
    /// Reads what is there into `buf`; 0 at the end of the stream.
    /// Cancel-safe.
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl ReadHalfOf for OwnedReadHalf {
    /// Reserves room only once bytes are ready, so an idle connection
    /// holds no buffer.
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        loop {
            self.readable().await?;
            buf.reserve(READ_CHUNK);
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

impl<S: AsyncRead + Send + 'static> ReadHalfOf for ReadHalf<S> {
    /// TLS keeps buffers of its own anyway, and an in-process pipe is
    /// not an idle network connection.
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        buf.reserve(READ_CHUNK);
        self.read_buf(buf).await
    }
}

/// Serves a plain TCP connection.
pub(crate) async fn serve_plain(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let (r, w) = tcp.into_split();
    serve(r, w, peer, ctx, shutdown).await
}

/// Serves a connection whose TLS handshake is done, or one made in
/// process (an embedding gateway's).
pub(crate) async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    serve(r, w, peer, ctx, shutdown).await
}

/// Writes queued bytes, coalescing whatever is queued into one write. The
/// coalescing buffer lives only while there is something to write.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, receiver: OutboxReceiver) {
    loop {
        let mut batch = Vec::new();
        if !receiver.next_batch(&mut batch, MAX_BATCH).await {
            let _ = writer.shutdown().await;
            return;
        }
        if writer.write_all(&batch).await.is_err() {
            receiver.abandon();
            return;
        }
    }
}
