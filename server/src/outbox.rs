//! The queue of bytes waiting to be written to one client connection.
//!
//! Anyone may push to a connection (its own handlers, or another user's
//! task delivering a message) without waiting. The bytes queued are
//! counted, and a connection whose client stops reading is closed once the
//! count passes the limit, instead of letting memory grow. Every outbox
//! also draws on one [`Budget`] for the whole server, so the limit per
//! connection times the number of connections is not the bound on memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use proto::{ErrorCode, Packet};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The bytes waiting, and whether the connection has queued its last.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    ended: bool,
}

/// The bytes queued for all connections together, and their limit.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes for every outbox together.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }
}

#[derive(Debug)]
struct Shared {
    // A plain deque rather than a channel: it allocates nothing while the
    // connection is idle, which keeps an idle session small.
    queue: Mutex<Queue>,
    ready: Notify,
    /// Signalled when the writer takes bytes, for [`Outbox::room_for`].
    drained: Notify,
    queued: AtomicUsize,
    limit: usize,
    budget: Arc<Budget>,
    closing: CancellationToken,
    // Mirrors `closing` for the per-packet check: the token's own check
    // takes a lock, which showed in profiles of broadcast fan-out.
    closed: AtomicBool,
    reason: Mutex<Option<(ErrorCode, String)>>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses what comes from now on, wakes the reader to close, and
    /// releases anyone waiting for room.
    fn shut(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.closing.cancel();
        self.drained.notify_waiters();
    }

    fn sub(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.budget.used.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for Shared {
    /// Bytes never written go back to the server's budget.
    fn drop(&mut self) {
        let left = *self.queued.get_mut();
        self.budget.used.fetch_sub(left, Ordering::Relaxed);
    }
}

/// A cloneable handle that queues bytes for one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's end of an [`Outbox`].
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl OutboxReceiver {
    /// The connection can no longer be written to: refuse what comes and
    /// release anyone waiting for room.
    pub(crate) fn abandon(&self) {
        self.shared.shut();
    }

    /// Moves up to about `max` queued bytes into `batch`. Waits while
    /// nothing is queued; returns false once the last bytes were taken.
    pub(crate) async fn next_batch(&self, batch: &mut Vec<u8>, max: usize) -> bool {
        loop {
            {
                let mut q = self.shared.queue();
                if !q.frames.is_empty() {
                    let mut taken = 0;
                    while let Some(frame) = q.frames.pop_front() {
                        batch.extend_from_slice(&frame);
                        taken += frame.len();
                        if batch.len() >= max {
                            break;
                        }
                    }
                    if q.frames.is_empty() && q.frames.capacity() > 16 {
                        q.frames = VecDeque::new();
                    }
                    self.shared.sub(taken);
                    drop(q);
                    self.shared.drained.notify_waiters();
                    return true;
                }
                if q.ended {
                    return false;
                }
            }
            self.shared.ready.notified().await;
        }
    }
}

impl Outbox {
    /// Waits until `len` more bytes fit under the limit, the queue is
    /// empty, or the connection is closing. For the server's own bulk
    /// sends (redelivery), which should wait for the client rather than
    /// be cut off as a slow reader.
    pub(crate) async fn room_for(&self, len: usize) {
        loop {
            // Registered before the check, so a drain in between is seen.
            let drained = self.shared.drained.notified();
            let queued = self.shared.queued.load(Ordering::Relaxed);
            if queued == 0
                || queued + len <= self.shared.limit
                || self.shared.closed.load(Ordering::Relaxed)
            {
                return;
            }
            drained.await;
        }
    }

    /// A new queue that holds at most `limit` unwritten bytes, drawing on
    /// the server's `budget`.
    pub(crate) fn new(limit: usize, budget: Arc<Budget>) -> (Self, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            drained: Notify::new(),
            queued: AtomicUsize::new(0),
            limit,
            budget,
            closing: CancellationToken::new(),
            closed: AtomicBool::new(false),
            reason: Mutex::new(None),
        });
        (
            Self {
                shared: shared.clone(),
            },
            OutboxReceiver { shared },
        )
    }

    fn push(&self, frames: impl IntoIterator<Item = Bytes>) -> bool {
        let mut q = self.shared.queue();
        if q.ended {
            return false;
        }
        q.frames.extend(frames);
        drop(q);
        self.shared.ready.notify_one();
        true
    }

    /// Queues bytes. Returns false, and closes the connection, when the
    /// client has fallen too far behind.
    pub(crate) fn send(&self, bytes: Bytes) -> bool {
        self.enqueue(bytes.len(), [bytes])
    }

    /// Queues several frames under one lock and one wake-up, so that the
    /// writer finds them together and writes them in one system call.
    pub(crate) fn send_all(&self, frames: &[Bytes]) -> bool {
        let len = frames.iter().map(Bytes::len).sum();
        self.enqueue(len, frames.iter().cloned())
    }

    fn enqueue(&self, len: usize, frames: impl IntoIterator<Item = Bytes>) -> bool {
        if self.shared.closed.load(Ordering::Relaxed) {
            return false;
        }
        let shared = &self.shared;
        let before = shared.queued.fetch_add(len, Ordering::Relaxed);
        let total = shared.budget.used.fetch_add(len, Ordering::Relaxed);
        // An empty queue takes any one frame, however large: a client that
        // reads is never cut off, only one with a backlog.
        let over = if before > 0 && before + len > shared.limit {
            Some(format!(
                "more than {} bytes were waiting for this connection to read",
                shared.limit
            ))
        } else if before > 0 && total + len > shared.budget.limit {
            Some(format!(
                "the server holds {} bytes for clients that do not read, its limit; this connection had {before} waiting",
                shared.budget.limit
            ))
        } else {
            None
        };
        if let Some(why) = over {
            shared.sub(len);
            self.close(ErrorCode::SlowReader, why);
            return false;
        }
        if !self.push(frames) {
            shared.sub(len);
            return false;
        }
        true
    }

    /// Asks the connection to close, telling the client why. The first
    /// reason given wins.
    pub(crate) fn close(&self, code: ErrorCode, text: String) {
        if let Ok(mut reason) = self.shared.reason.lock() {
            reason.get_or_insert((code, text));
        }
        self.shared.shut();
    }

    /// Resolves when someone asked the connection to close.
    pub(crate) async fn closing(&self) {
        self.shared.closing.cancelled().await
    }

    /// Why the connection was asked to close, if it was.
    pub(crate) fn close_reason(&self) -> Option<(ErrorCode, String)> {
        self.shared.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Queues the last bytes, past the limit, and ends the queue. Nothing
    /// queued after this is written.
    pub(crate) fn finish(&self, last: Option<&Packet>) {
        if let Some(p) = last {
            let mut buf = BytesMut::new();
            if p.encode(&mut buf).is_ok() {
                let n = buf.len();
                self.shared.queued.fetch_add(n, Ordering::Relaxed);
                self.shared.budget.used.fetch_add(n, Ordering::Relaxed);
                if !self.push([buf.freeze()]) {
                    self.shared.sub(n);
                }
            }
        }
        self.shared.queue().ended = true;
        self.shared.ready.notify_one();
    }

    /// Whether two handles queue for the same connection.
    pub(crate) fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// A broadcast kept in the store as the (delivery number, packet) that is
/// fanned out.
pub(crate) fn kept_broadcast(b: &crate::store::KeptBroadcast) -> Option<(u64, Bytes)> {
    let packet = Packet::IncomingMessage {
        from: b.sender,
        message: b.delivery,
        body: b.body.clone(),
    };
    encode(&packet).map(|bytes| (b.delivery, bytes))
}

/// A packet as bytes to queue; `None` (logged) if it cannot be encoded,
/// which the server's own packets never are.
pub(crate) fn encode(packet: &Packet) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(packet.encoded_len());
    match packet.encode(&mut buf) {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a packet");
            None
        }
    }
}
