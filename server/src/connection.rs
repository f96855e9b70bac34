//! One client connection: a reader that decodes and handles packets in
//! order, and a writer task that drains the connection's [`Outbox`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use proto::{decode_from, ErrorCode, Packet};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;
use crate::handlers;
use crate::hub::Session;
use crate::outbox::{Outbox, OutboxReceiver};

/// Bytes read from the socket at a time, at most.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes coalesced into one socket write, at most.
const MAX_BATCH: usize = 64 * 1024;

/// The reader's view of a connection, passed to every handler.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) ctx: Arc<Context>,
    pub(crate) out: Outbox,
    pub(crate) session: Option<Arc<Session>>,
}

impl Connection {
    /// Queues a reply.
    pub(crate) fn reply(&self, packet: Packet) {
        self.out.send_packet(&packet);
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
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("conn", %peer);
    async move {
        tracing::debug!("connected");
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let (out, receiver) = Outbox::new(ctx.config.max_queued_bytes);
        let write_task = tokio::spawn(write_loop(writer, receiver).in_current_span());
        let mut conn = Connection {
            ctx: ctx.clone(),
            out: out.clone(),
            session: None,
        };
        // The read buffer is allocated only while bytes are in it, so an
        // idle connection costs a few hundred bytes, not a buffer.
        let mut buf = BytesMut::new();
        let last: Option<Packet> = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Some(error_packet(0, ErrorCode::ShuttingDown, "the server is shutting down")),
                _ = out.closing() => break out.close_reason().map(|(code, text)| error_packet(0, code, &text)),
                ready = reader.readable() => {
                    if let Err(e) = ready {
                        tracing::debug!(error = %e, "read failed");
                        break None;
                    }
                    buf.reserve(READ_CHUNK);
                    match reader.try_read_buf(&mut buf) {
                        Ok(0) => {
                            if !buf.is_empty() {
                                tracing::debug!(bytes = buf.len(), "closed in the middle of a packet");
                            }
                            break None;
                        }
                        Ok(_) => {
                            if let Some(last) = drain_packets(&mut conn, &mut buf).await {
                                break Some(last);
                            }
                            if buf.is_empty() {
                                buf = BytesMut::new();
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
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

/// Decodes and handles every whole packet in `buf`. Consecutive messages
/// go to the store together and are answered after one commit. Returns the
/// ERROR to close with when the stream is corrupt.
async fn drain_packets(conn: &mut Connection, buf: &mut BytesMut) -> Option<Packet> {
    let mut pipeline = handlers::Pipeline::default();
    loop {
        match decode_from(buf) {
            Ok(Some(packet)) => {
                if let Some(packet) = pipeline.try_start(conn, packet) {
                    pipeline.finish(conn).await;
                    handlers::handle(conn, packet).await;
                }
            }
            Ok(None) => {
                pipeline.finish(conn).await;
                return None;
            }
            Err(e) => {
                pipeline.finish(conn).await;
                tracing::info!(error = %e, "protocol error; closing");
                return Some(error_packet(e.request_type(), e.code(), &e.to_string()));
            }
        }
    }
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
            st.conn = None;
        }
    }
}

/// Writes queued bytes, coalescing whatever is queued into one write. The
/// coalescing buffer lives only while there is something to write.
async fn write_loop(mut writer: OwnedWriteHalf, receiver: OutboxReceiver) {
    loop {
        let mut batch = Vec::new();
        if !receiver.next_batch(&mut batch, MAX_BATCH).await {
            let _ = writer.shutdown().await;
            return;
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
    }
}
