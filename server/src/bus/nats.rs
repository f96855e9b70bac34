//! The NATS bus: core publish/subscribe, one connection per process.
//!
//! # Subjects
//! - `chat.u.<user>`: direct messages for a user; a process subscribes
//!   while it holds a session of that user. Payload: the delivery number
//!   (8 bytes, big-endian), then the encoded packet.
//! - `chat.bcast`: broadcasts, to every process. Payload: the sending
//!   process's id and the sender's user number (8 bytes each), then per
//!   broadcast its number (8 bytes), the packet's length (4 bytes) and the
//!   packet. A process skips its own (it fanned them out already).
//! - `chat.catchup`: "read your mailboxes again", with the asking
//!   process's id: sent by a process that may have lost publications (its
//!   connection dropped, or its queue to NATS overflowed).
//! - `chat.sync.<process>`: this process's own echo, to know that NATS has
//!   seen every subscription made before it ([`NatsBus::barrier`]).
//! - `chat.release.<node>`: requests to node `<node>` (its number in the
//!   `nodes` table) to end a session that another node has taken over
//!   (resumed, or replaced by a sign-in). Payload: the session number (8
//!   bytes). The reply carries the broadcasts the session was owed there,
//!   in the form of `chat.bcast` (at most one chunk), for the new node to
//!   redeliver; it is empty if the node no longer had the session (the
//!   new node then reads the broadcasts PostgreSQL keeps).
//!
//! One connection carries everything a process publishes, so one
//! sender's direct messages and broadcasts reach each other process in
//! the order they were committed.
//!
//! # Nothing lost, repeats allowed
//! A message is committed before it is published, and a process
//! subscribes to a user, and waits for NATS to have the subscription,
//! before it reads that user's mailbox. So a message is read from the
//! store, or arrives live, or both; the client core drops the repeat.
//! NATS itself may lose messages while a connection is down, so after
//! every reconnection (and when a subscription overflowed, or a peer asks)
//! the process reads the mailboxes of its attached users again
//! ([`crate::redelivery::catch_up`]), and the broadcasts PostgreSQL keeps
//! (the most recent `--max-pending-broadcasts`), fanning out those it has
//! not seen.
//!
//! Not covered yet: a session whose redelivery is running when a catch-up
//! comes reads the rest of its mailbox from where that read stands, so a
//! lost message numbered below that point (taken by another process
//! before, committed after the read passed it) waits for the next
//! catch-up or sign-in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::hub::{Hub, Session};
use crate::observe::names;

/// Subject prefix of direct messages, followed by the user number.
const USER_SUBJECT: &str = "chat.u.";
/// Subject of broadcasts.
const BROADCAST_SUBJECT: &str = "chat.bcast";
/// Subject of catch-up requests.
const CATCH_UP_SUBJECT: &str = "chat.catchup";
/// Subject prefix of each process's echo, followed by its id.
const SYNC_SUBJECT: &str = "chat.sync.";

/// Publications waiting for the NATS connection, at most; past it they are
/// dropped, and the peers are asked to catch up once there is room.
const QUEUE: usize = 64 * 1024;
/// Broadcast bytes per NATS message, at most (NATS's default limit is
/// 1 MiB a message).
const BROADCAST_CHUNK: usize = 256 * 1024;
/// Subject prefix of each node's release requests, followed by its number.
const RELEASE_SUBJECT: &str = "chat.release.";
/// How long a node taking a session over waits for the old node's answer.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// Why a session taken over by another node ends here.
pub(crate) const MOVED: &str = "the session was resumed on another connection";

/// How long a new session waits for NATS to confirm its subscription
/// before its mailbox is read anyway (a catch-up follows once NATS is back).
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BusError {
    /// The first connection to NATS failed.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The URL given.
        url: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
    /// The NATS server did not echo this process's first message.
    #[error("NATS at {0} did not answer in time")]
    NoEcho(String),
    /// A subscription the bus needs could not be made.
    #[error("cannot subscribe to {subject} on NATS: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        source: async_nats::SubscribeError,
    },
}

/// What the connection's events tell the rest of the bus.
#[derive(Debug, Default)]
struct Signals {
    /// Wakes the catch-up task.
    catch_up: Notify,
    /// The next catch-up also asks the peers to catch up.
    ask_peers: AtomicBool,
    /// Connections made so far (the first is not a reconnection).
    connections: AtomicU64,
}

impl Signals {
    fn on(&self, event: async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                if self.connections.fetch_add(1, Ordering::AcqRel) > 0 {
                    tracing::info!("NATS connection back: catching up from the store");
                    self.ask_peers.store(true, Ordering::Release);
                    self.catch_up.notify_one();
                }
            }
            async_nats::Event::Disconnected => {
                tracing::warn!("NATS connection lost; reconnecting");
            }
            async_nats::Event::SlowConsumer(sid) => {
                tracing::warn!(
                    sid,
                    "a NATS subscription overflowed: catching up from the store"
                );
                self.catch_up.notify_one();
            }
            other => tracing::info!(event = %other, "NATS"),
        }
    }
}

/// A subscription to one user's direct messages, shared by that user's
/// sessions in this process.
#[derive(Debug)]
struct Listener {
    sessions: usize,
    /// Becomes true once the subscription is on its way to NATS.
    subscribed: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

/// Echo requests waiting for their echo, by sequence number.
#[derive(Debug, Default)]
struct Echoes {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One publication for the publisher task.
#[derive(Debug)]
struct Outgoing {
    subject: String,
    payload: Bytes,
}

/// The NATS side of [`super::Bus`].
#[derive(Debug)]
pub(crate) struct NatsBus {
    hub: Arc<Hub>,
    client: async_nats::Client,
    /// This process's id on the bus, random per start.
    node: u64,
    out: mpsc::Sender<Outgoing>,
    /// A publication was dropped: the peers must catch up.
    lost: Arc<AtomicBool>,
    listeners: Mutex<HashMap<u64, Listener>>,
    echoes: Arc<Mutex<Echoes>>,
    signals: Arc<Signals>,
    /// The tasks reading subscriptions and publishing, ended at drop.
    tasks: Vec<tokio::task::AbortHandle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NatsBus {
    /// Connects to the NATS server at `url` (for example
    /// `nats://127.0.0.1:4222`) and starts reading broadcasts for `hub`.
    /// Reconnections after this first connection are retried for ever.
    pub(crate) async fn connect(url: &str, hub: Arc<Hub>) -> Result<Arc<Self>, BusError> {
        let node: u64 = rand::random();
        let signals = Arc::new(Signals::default());
        let client = async_nats::ConnectOptions::new()
            .name(format!("chat-server {node:016x}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(100).min(2000))
            })
            .event_callback({
                let signals = signals.clone();
                move |event| {
                    let signals = signals.clone();
                    async move { signals.on(event) }
                }
            })
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|source| BusError::Subscribe { subject, source })
            }
        };
        let broadcasts = subscribe(BROADCAST_SUBJECT.into()).await?;
        let requests = subscribe(CATCH_UP_SUBJECT.into()).await?;
        let echo = subscribe(format!("{SYNC_SUBJECT}{node:016x}")).await?;
        let echoes = Arc::new(Mutex::new(Echoes::default()));
        let lost = Arc::new(AtomicBool::new(false));
        let (out, rx) = mpsc::channel(QUEUE);
        let tasks = vec![
            tokio::spawn(read_broadcasts(broadcasts, node, hub.clone())).abort_handle(),
            tokio::spawn(read_requests(requests, node, signals.clone())).abort_handle(),
            tokio::spawn(read_echoes(echo, echoes.clone())).abort_handle(),
            tokio::spawn(publish(client.clone(), rx, node, lost.clone())).abort_handle(),
        ];
        let bus = Arc::new(Self {
            hub,
            client,
            node,
            out,
            lost,
            listeners: Mutex::new(HashMap::new()),
            echoes,
            signals,
            tasks,
        });
        // Broadcasts from the others reach this process from here on.
        if !matches!(
            tokio::time::timeout(LISTEN_WAIT, bus.barrier()).await,
            Ok(true)
        ) {
            return Err(BusError::NoEcho(url.to_owned()));
        }
        tracing::info!(node = %format!("{node:016x}"), "on the NATS bus");
        Ok(bus)
    }

    /// Queues a publication without waiting: a handler never waits for
    /// NATS. Dropped when the queue is full; the peers then catch up.
    fn publish(&self, subject: String, payload: Bytes, kind: &'static str) {
        match self.out.try_send(Outgoing { subject, payload }) {
            Ok(()) => metrics::counter!(names::BUS_PUBLISHED, "kind" => kind).increment(1),
            Err(_) => {
                self.lost.store(true, Ordering::Release);
                metrics::counter!(names::BUS_DROPPED, "kind" => kind).increment(1);
            }
        }
    }

    /// See [`super::Bus::deliver`]: a user attached here gets it at once;
    /// otherwise it is published for the process that has the user.
    pub(crate) fn deliver(&self, user: u64, delivery: u64, bytes: Bytes) {
        if self.hub.deliver_if_attached(user, delivery, bytes.clone()) {
            return;
        }
        let mut payload = BytesMut::with_capacity(8 + bytes.len());
        payload.put_u64(delivery);
        payload.put(bytes);
        self.publish(format!("{USER_SUBJECT}{user}"), payload.freeze(), "direct");
    }

    /// See [`super::Bus::broadcast`]: fanned out here, and published for
    /// the other processes, in chunks NATS accepts.
    pub(crate) fn broadcast(&self, sender: &Session, batch: &[(u64, Bytes)]) {
        self.hub.broadcast(sender, batch);
        for payload in encode_broadcasts(self.node, sender.user, batch) {
            self.publish(BROADCAST_SUBJECT.into(), payload, "broadcast");
        }
    }

    /// See [`super::Bus::listen`].
    pub(crate) async fn listen(&self, user: u64) {
        let mut subscribed = {
            let mut listeners = lock(&self.listeners);
            let listener = listeners.entry(user).or_insert_with(|| {
                let (tx, rx) = watch::channel(false);
                let task = tokio::spawn(read_user(self.client.clone(), user, tx, self.hub.clone()));
                Listener {
                    sessions: 0,
                    subscribed: rx,
                    task: task.abort_handle(),
                }
            });
            listener.sessions += 1;
            listener.subscribed.clone()
        };
        let confirmed = tokio::time::timeout(LISTEN_WAIT, async {
            subscribed.wait_for(|s| *s).await.is_ok() && self.barrier().await
        })
        .await;
        if !matches!(confirmed, Ok(true)) {
            // NATS is away: read again once it has the subscription.
            tracing::warn!(user, "NATS did not confirm a subscription in time");
            self.signals.catch_up.notify_one();
        }
    }

    /// See [`super::Bus::unlisten`].
    pub(crate) fn unlisten(&self, user: u64) {
        let mut listeners = lock(&self.listeners);
        if let Some(listener) = listeners.get_mut(&user) {
            listener.sessions = listener.sessions.saturating_sub(1);
            if listener.sessions == 0 {
                // Aborting drops the subscriber, which unsubscribes.
                listener.task.abort();
                listeners.remove(&user);
            }
        }
    }

    /// Waits until the NATS server has processed everything this process
    /// sent before (subscriptions included): an echo of our own comes
    /// back. False if the connection closed.
    async fn barrier(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        let n = {
            let mut echoes = lock(&self.echoes);
            echoes.next += 1;
            let n = echoes.next;
            echoes.waiting.insert(n, tx);
            n
        };
        let subject = format!("{SYNC_SUBJECT}{:016x}", self.node);
        if self
            .client
            .publish(subject, Bytes::copy_from_slice(&n.to_be_bytes()))
            .await
            .is_err()
        {
            return false;
        }
        rx.await.is_ok()
    }

    /// Asks for a catch-up of the sessions attached here (a peer died:
    /// it may have committed messages it never published).
    pub(crate) fn catch_up_now(&self) {
        tracing::info!("a peer's lease ended: catching up from the store");
        self.signals.catch_up.notify_one();
    }

    /// Runs catch-ups until `shutdown`: after a reconnection, an overflow,
    /// a subscription NATS did not confirm, or a peer's request, once NATS
    /// has every subscription again, the mailboxes of the sessions attached
    /// here are read again.
    pub(crate) async fn run_catch_ups(
        self: Arc<Self>,
        ctx: Arc<Context>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.signals.catch_up.notified() => {}
            }
            // NATS has the subscriptions again once our echo comes back.
            loop {
                let echoed = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = tokio::time::timeout(LISTEN_WAIT, self.barrier()) => matches!(e, Ok(true)),
                };
                if echoed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.signals.ask_peers.swap(false, Ordering::AcqRel) {
                self.ask_peers();
            }
            metrics::counter!(names::BUS_CATCH_UPS).increment(1);
            let mut sessions = 0;
            for session in ctx.hub.all() {
                if crate::redelivery::catch_up(&ctx, session) {
                    sessions += 1;
                }
            }
            let Some(broadcasts) = catch_up_broadcasts(&ctx).await else {
                // PostgreSQL did not answer: again in a second.
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.signals.catch_up.notify_one();
                continue;
            };
            tracing::info!(sessions, broadcasts, "caught up from the store");
        }
    }

    /// Asks node `node` to end `session`, which this node has taken over,
    /// and returns the broadcasts it was owed there. `None` if the node
    /// did not answer in time (it may have died, or lost NATS: its lease
    /// then decides), or no longer had the session.
    pub(crate) async fn release(&self, node: u64, session: u64) -> Option<Vec<(u64, Bytes)>> {
        let request = self.client.request(
            format!("{RELEASE_SUBJECT}{node}"),
            Bytes::copy_from_slice(&session.to_be_bytes()),
        );
        match tokio::time::timeout(RELEASE_WAIT, request).await {
            // An empty reply: the node no longer had the session, so it
            // cannot say what was owed.
            Ok(Ok(reply)) if reply.payload.is_empty() => None,
            Ok(Ok(reply)) => decode_broadcasts(reply.payload).map(|(_, _, batch)| batch),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, node, session, "no answer to a release request");
                None
            }
            Err(_) => {
                tracing::warn!(node, session, "no answer to a release request in time");
                None
            }
        }
    }

    /// Answers the release requests to node `node` until `shutdown`: the
    /// session named ends here with SESSION_MOVED, and the reply carries
    /// what it was owed.
    pub(crate) async fn serve_releases(
        self: Arc<Self>,
        node: u64,
        ctx: Arc<Context>,
        shutdown: CancellationToken,
    ) {
        let subject = format!("{RELEASE_SUBJECT}{node}");
        let mut sub = match self.client.subscribe(subject.clone()).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::error!(error = %e, %subject, "cannot subscribe on NATS");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = sub.next() => m,
            };
            let Some(message) = message else { return };
            let mut payload = message.payload;
            if payload.len() != 8 {
                tracing::warn!("a malformed release request on NATS");
                continue;
            }
            let session = payload.get_u64();
            let mut owed = None;
            if let Some(s) = ctx.hub.remove(session) {
                owed = Some(ctx.hub.owed_now(&s));
                tracing::info!(session, user = s.user, "session taken over by another node");
                ctx.end_session(&s, proto::ErrorCode::SessionMoved, MOVED.into());
            }
            if let Some(reply) = message.reply {
                let user = 0;
                let payload = match owed {
                    None => Bytes::new(),
                    Some(owed) => encode_broadcasts(self.node, user, &owed)
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| encode_broadcasts_header(self.node, user)),
                };
                if let Err(e) = self.client.publish(reply, payload).await {
                    tracing::warn!(error = %e, "cannot answer a release request");
                }
            }
        }
    }

    /// Asks every other process to read its mailboxes again.
    fn ask_peers(&self) {
        self.publish(
            CATCH_UP_SUBJECT.into(),
            Bytes::copy_from_slice(&self.node.to_be_bytes()),
            "catch_up",
        );
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for listener in lock(&self.listeners).values() {
            listener.task.abort();
        }
    }
}

/// Fans out the broadcasts kept in PostgreSQL since this node joined that
/// it has not seen (NATS lost them, or their node died before publishing
/// them); returns how many, or `None` if PostgreSQL could not be read.
/// Those it has seen are recognised by number.
async fn catch_up_broadcasts(ctx: &Context) -> Option<usize> {
    let limit = ctx.config.max_pending_broadcasts;
    let kept = match ctx.store.recent_broadcasts(ctx.node(), limit).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the broadcasts kept");
            return None;
        }
    };
    // A run of one sender's broadcasts is fanned out together, as it came.
    let mut new = 0;
    for run in kept.chunk_by(|a, b| a.sender == b.sender) {
        let batch: Vec<(u64, Bytes)> = run
            .iter()
            .filter_map(crate::outbox::kept_broadcast)
            .collect();
        new += ctx.hub.broadcast_from_afar(run[0].sender, &batch);
    }
    metrics::counter!(names::BUS_CAUGHT_UP_BROADCASTS).increment(new as u64);
    Some(new)
}

/// Reads one user's direct messages while the user has a session here.
async fn read_user(
    client: async_nats::Client,
    user: u64,
    subscribed: watch::Sender<bool>,
    hub: Arc<Hub>,
) {
    let mut sub = match client.subscribe(format!("{USER_SUBJECT}{user}")).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, user, "cannot subscribe on NATS");
            return;
        }
    };
    subscribed.send_replace(true);
    while let Some(message) = sub.next().await {
        match decode_direct(message.payload) {
            Some((delivery, bytes)) => hub.deliver(user, delivery, bytes),
            None => tracing::warn!(user, "a malformed direct message on NATS"),
        }
    }
}

async fn read_broadcasts(mut sub: async_nats::Subscriber, node: u64, hub: Arc<Hub>) {
    while let Some(message) = sub.next().await {
        match decode_broadcasts(message.payload) {
            Some((from, _, _)) if from == node => {}
            Some((_, sender, batch)) => {
                hub.broadcast_from_afar(sender, &batch);
            }
            None => tracing::warn!("a malformed broadcast on NATS"),
        }
    }
}

async fn read_requests(mut sub: async_nats::Subscriber, node: u64, signals: Arc<Signals>) {
    while let Some(message) = sub.next().await {
        let mut payload = message.payload;
        if payload.len() >= 8 && payload.get_u64() != node {
            signals.catch_up.notify_one();
        }
    }
}

async fn read_echoes(mut sub: async_nats::Subscriber, echoes: Arc<Mutex<Echoes>>) {
    while let Some(message) = sub.next().await {
        let mut payload = message.payload;
        if payload.len() < 8 {
            continue;
        }
        let n = payload.get_u64();
        let mut echoes = lock(&echoes);
        // Echoes come back in order: every request up to `n` is through.
        let later = echoes.waiting.split_off(&n.saturating_add(1));
        for (_, waiter) in std::mem::replace(&mut echoes.waiting, later) {
            let _ = waiter.send(());
        }
    }
}

/// Publishes what the handlers queued, in order, and asks the peers to
/// catch up after any was dropped.
async fn publish(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    node: u64,
    lost: Arc<AtomicBool>,
) {
    while let Some(o) = rx.recv().await {
        if let Err(e) = client.publish(o.subject, o.payload).await {
            tracing::warn!(error = %e, "a NATS publication failed");
            lost.store(true, Ordering::Release);
        }
        if rx.is_empty() && lost.swap(false, Ordering::AcqRel) {
            let ask = Bytes::copy_from_slice(&node.to_be_bytes());
            if client.publish(CATCH_UP_SUBJECT, ask).await.is_err() {
                lost.store(true, Ordering::Release);
            } else {
                metrics::counter!(names::BUS_PUBLISHED, "kind" => "catch_up").increment(1);
            }
        }
    }
}

/// Splits the payload of a direct message into delivery number and
/// packet; `None` if malformed.
fn decode_direct(mut payload: Bytes) -> Option<(u64, Bytes)> {
    if payload.len() <= 8 {
        return None;
    }
    let delivery = payload.get_u64();
    Some((delivery, payload))
}

/// The payloads carrying `batch` of `sender`'s broadcasts from `node`.
fn encode_broadcasts(node: u64, sender: u64, batch: &[(u64, Bytes)]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    for (number, bytes) in batch {
        if buf.is_empty() {
            buf.put_u64(node);
            buf.put_u64(sender);
        }
        buf.put_u64(*number);
        // A packet's length fits a u32: frames are far shorter.
        buf.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        buf.put(bytes.clone());
        if buf.len() >= BROADCAST_CHUNK {
            out.push(buf.split().freeze());
        }
    }
    if !buf.is_empty() {
        out.push(buf.freeze());
    }
    out
}

/// A payload of no broadcasts.
fn encode_broadcasts_header(node: u64, sender: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u64(node);
    buf.put_u64(sender);
    buf.freeze()
}

/// What one NATS message of broadcasts carries: the process that sent it,
/// the sender's user number, and the broadcasts (number, packet).
type Published = (u64, u64, Vec<(u64, Bytes)>);

/// What [`encode_broadcasts`] made; `None` if malformed.
fn decode_broadcasts(mut payload: Bytes) -> Option<Published> {
    if payload.len() < 16 {
        return None;
    }
    let node = payload.get_u64();
    let sender = payload.get_u64();
    let mut batch = Vec::new();
    while payload.has_remaining() {
        if payload.len() < 12 {
            return None;
        }
        let number = payload.get_u64();
        let len = usize::try_from(payload.get_u32()).ok()?;
        if payload.len() < len {
            return None;
        }
        batch.push((number, payload.split_to(len)));
    }
    Some((node, sender, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_round_trip_in_chunks_and_bad_payloads_are_refused() {
        let big = Bytes::from(vec![7u8; BROADCAST_CHUNK / 2 + 1]);
        let batch: Vec<(u64, Bytes)> = (1..=5).map(|n| (n, big.clone())).collect();
        let payloads = encode_broadcasts(3, 9, &batch);
        assert_eq!(payloads.len(), 3);
        let mut back = Vec::new();
        for p in payloads {
            let (node, sender, part) = decode_broadcasts(p).unwrap();
            assert_eq!((node, sender), (3, 9));
            back.extend(part);
        }
        assert_eq!(back, batch);
        let one = encode_broadcasts(3, 9, &batch[..1]).remove(0);
        for cut in [0, 15, 16 + 11, one.len() - 1] {
            assert!(
                decode_broadcasts(one.slice(..cut)).is_none(),
                "cut at {cut}"
            );
        }
        assert!(decode_direct(Bytes::from_static(&[0; 8])).is_none());
        let mut direct = BytesMut::new();
        direct.put_u64(42);
        direct.put_slice(b"packet");
        assert_eq!(
            decode_direct(direct.freeze()),
            Some((42, Bytes::from_static(b"packet")))
        );
    }
}
