//! The queue of bytes waiting to be written to one client connection.
//!
//! Anyone may push to a connection (its own handlers, or another user's
//! task delivering a message) without waiting. The bytes queued are
//! counted, and a connection whose client stops reading is closed once the
//! count passes the limit, instead of letting memory grow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use proto::{ErrorCode, Packet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the writer task receives.
#[derive(Debug)]
pub(crate) enum Frame {
    /// Bytes to write.
    Data(Bytes),
    /// Flush and stop.
    End,
}

#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    limit: usize,
    closing: CancellationToken,
    reason: Mutex<Option<(ErrorCode, String)>>,
}

/// A cloneable handle that queues bytes for one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
    shared: Arc<Shared>,
}

/// The writer's end of an [`Outbox`].
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    pub(crate) rx: mpsc::UnboundedReceiver<Frame>,
    shared: Arc<Shared>,
}

impl OutboxReceiver {
    /// The writer wrote `n` bytes: they no longer count against the limit.
    pub(crate) fn written(&self, n: usize) {
        self.shared.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Outbox {
    /// A new queue that holds at most `limit` unwritten bytes.
    pub(crate) fn new(limit: usize) -> (Self, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            limit,
            closing: CancellationToken::new(),
            reason: Mutex::new(None),
        });
        (
            Self {
                tx,
                shared: shared.clone(),
            },
            OutboxReceiver { rx, shared },
        )
    }

    /// Queues bytes. Returns false, and closes the connection, when the
    /// client has fallen too far behind.
    pub(crate) fn send(&self, bytes: Bytes) -> bool {
        if self.shared.closing.is_cancelled() {
            return false;
        }
        let len = bytes.len();
        let before = self.shared.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.shared.limit {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            self.close(
                ErrorCode::SlowReader,
                format!(
                    "more than {} bytes were waiting for this connection to read",
                    self.shared.limit
                ),
            );
            return false;
        }
        self.tx.send(Frame::Data(bytes)).is_ok()
    }

    /// Encodes and queues a packet.
    pub(crate) fn send_packet(&self, packet: &Packet) -> bool {
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        match packet.encode(&mut buf) {
            Ok(()) => self.send(buf.freeze()),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                false
            }
        }
    }

    /// Asks the connection to close, telling the client why. The first
    /// reason given wins.
    pub(crate) fn close(&self, code: ErrorCode, text: String) {
        if let Ok(mut reason) = self.shared.reason.lock() {
            reason.get_or_insert((code, text));
        }
        self.shared.closing.cancel();
    }

    /// Resolves when someone asked the connection to close.
    pub(crate) async fn closing(&self) {
        self.shared.closing.cancelled().await
    }

    /// Why the connection was asked to close, if it was.
    pub(crate) fn close_reason(&self) -> Option<(ErrorCode, String)> {
        self.shared.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Queues the last bytes, past the limit, and the end marker. Nothing
    /// queued after this is written.
    pub(crate) fn finish(&self, last: Option<&Packet>) {
        if let Some(p) = last {
            let mut buf = BytesMut::new();
            if p.encode(&mut buf).is_ok() {
                self.shared.queued.fetch_add(buf.len(), Ordering::Relaxed);
                let _ = self.tx.send(Frame::Data(buf.freeze()));
            }
        }
        let _ = self.tx.send(Frame::End);
    }

    /// Whether two handles queue for the same connection.
    pub(crate) fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
