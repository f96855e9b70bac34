//! Live sessions: the registry, presence, and live delivery.
//!
//! The hub knows which sessions exist, which connection each one is on,
//! and pushes messages to them. It is in memory and local to one server
//! process; deliveries to other processes go through the bus
//! ([`crate::bus`]), which hands what arrives from them to the hub here.
//!
//! Locks: the hub's lock is never held while a session's is taken. What
//! the hub asks of a session under its own lock (is it on a connection,
//! when was it last heard from) is kept in atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broadcasts::{Log, Owed};
use crate::observe::names;
use crate::outbox::Outbox;
use crate::rate::TokenBucket;
use crate::redelivery::{Held, Redelivery};
use crate::transfers::Transfers;

/// Milliseconds since the process's first call: a clock that fits an atomic.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The mutable part of a session.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// The connection the session is on; `None` while the client is away.
    pub(crate) conn: Option<Outbox>,
    /// Where the session stands in the hub's broadcast log.
    pub(crate) owed: Owed,
    pub(crate) rate: TokenBucket,
    pub(crate) redelivery: Redelivery,
    pub(crate) ended: bool,
}

/// A signed-in session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) user: u64,
    pub(crate) name: String,
    /// [`now_ms`] when the client was last heard from.
    last_seen: AtomicU64,
    /// Whether the session is on a connection; mirrors `state.conn`.
    attached: AtomicBool,
    state: Mutex<SessionState>,
    /// Uploads and downloads, under a lock of their own.
    pub(crate) transfers: Transfers,
    /// Wakes a redelivery waiting for acknowledgements.
    pub(crate) acked: tokio::sync::Notify,
    /// In a cluster, the number of the attachment this node last recorded
    /// in the name's row (see [`crate::store::Taken`]).
    pub(crate) epoch: AtomicU64,
}

impl Session {
    /// A session that counts as attached (its name is taken) but has no
    /// connection yet: its connection is set once the cookie is on its way,
    /// so nothing live can overtake the cookie.
    pub(crate) fn new(id: u64, user: u64, name: String, rate: TokenBucket, owed: Owed) -> Self {
        Self {
            id,
            user,
            name,
            last_seen: AtomicU64::new(now_ms()),
            attached: AtomicBool::new(true),
            state: Mutex::new(SessionState {
                conn: None,
                owed,
                rate,
                redelivery: Redelivery::started(),
                ended: false,
            }),
            transfers: Transfers::default(),
            acked: tokio::sync::Notify::new(),
            epoch: AtomicU64::new(0),
        }
    }

    /// Locks the session's state. A panic while it was held cannot leave it
    /// inconsistent in a way worth refusing service for, so poisoning is ignored.
    pub(crate) fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the session as active now.
    pub(crate) fn touch(&self) {
        self.last_seen.store(now_ms(), Ordering::Relaxed);
    }

    /// Moves the session to `conn` (or off any connection), returning the
    /// connection it was on. Call with the state locked.
    pub(crate) fn set_conn(&self, st: &mut SessionState, conn: Option<Outbox>) -> Option<Outbox> {
        self.attached.store(conn.is_some(), Ordering::Release);
        std::mem::replace(&mut st.conn, conn)
    }

    /// Whether the session is on a connection now.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// Pushes direct message `delivery` to the session's connection,
    /// unless a redelivery holds it for later, or has sent it already.
    pub(crate) fn push_direct(&self, delivery: u64, bytes: Bytes) {
        let mut st = self.state();
        if let Some(bytes) = st.redelivery.live_direct(delivery, bytes) {
            if let Some(conn) = &st.conn {
                if conn.send(bytes) {
                    metrics::counter!(names::DELIVERIES, "path" => "live_direct").increment(1);
                }
            }
        }
    }

    /// Runs `f` on the session's redelivery if the session is still on
    /// `out`, under one lock, so that a redelivery to a connection the
    /// session has left never touches the new one's.
    pub(crate) fn redelivery_on<T>(
        &self,
        out: &Outbox,
        f: impl FnOnce(&mut Redelivery) -> T,
    ) -> Option<T> {
        let mut st = self.state();
        if !st.conn.as_ref().is_some_and(|c| c.same(out)) {
            return None;
        }
        Some(f(&mut st.redelivery))
    }

    /// The client acknowledged `delivery`: a waiting redelivery may send more.
    pub(crate) fn acknowledged(&self, delivery: u64) {
        if self.state().redelivery.acked(delivery) {
            self.acked.notify_one();
        }
    }
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<u64, Arc<Session>>,
    by_user: HashMap<u64, Arc<Session>>,
}

/// How [`Hub::finish_redelivery`] went.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Finished: the held messages and the broadcasts not held, to send.
    Done(Vec<Held>, Vec<Bytes>),
    /// A direct message was left to the store: read it again.
    ReadAgain,
    /// The session moved off the connection.
    Gone,
}

/// What attaching a session to a connection gives: the connection it was
/// on, and the broadcasts it is owed, as (number, packet).
pub(crate) type Attached = (Option<Outbox>, Vec<(u64, Bytes)>);

/// Every live session of this server, and the recent broadcasts.
///
/// Lock order: the fan-out gate, the broadcast log, the sessions, one
/// session. Fan-outs share the gate; a session attaching to a connection
/// takes it alone, so each broadcast reaches that connection either live
/// or in the list of what the session is owed, never both and never
/// neither. Acknowledgements take neither.
#[derive(Debug)]
pub(crate) struct Hub {
    sessions: Mutex<Sessions>,
    log: Mutex<Log>,
    gate: RwLock<()>,
    keep: usize,
}

/// Why a session could not be opened.
#[derive(Debug)]
pub(crate) struct NameInUse;

impl Hub {
    /// A hub keeping the `keep` most recent broadcasts for redelivery.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            sessions: Mutex::new(Sessions::default()),
            log: Mutex::new(Log::new(keep)),
            gate: RwLock::new(()),
            keep,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a session that starts now stands in the broadcast log.
    pub(crate) fn new_owed(&self) -> Owed {
        Owed::new(self.log().floor_for_new_session())
    }

    /// Puts `session` on `conn` unless it has ended, returning the
    /// connection it was on and the broadcasts owed so far. A redelivery
    /// starts: until it finishes ([`Hub::finish_redelivery`]), what arrives
    /// live is held for it, so that what was stored and what arrives
    /// meanwhile come in order. Alone at the gate, so each broadcast is
    /// either in the list or held, never both and never neither.
    pub(crate) fn attach(&self, session: &Session, conn: Outbox) -> Option<Attached> {
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let log = self.log();
        let mut st = session.state();
        if st.ended {
            return None;
        }
        let previous = session.set_conn(&mut st, Some(conn));
        st.redelivery.restart();
        // What is held already goes out from the hold, not twice.
        let owed = log
            .owed(&st.owed, session.user)
            .into_iter()
            .filter(|(n, _)| !st.redelivery.holds_broadcast(*n))
            .collect();
        drop(st);
        // A redelivery to the previous connection notices it is gone.
        session.acked.notify_waiters();
        Some((previous, owed))
    }

    /// Ends `session`'s redelivery to `out` once its stored mailbox is
    /// sent: what was held, in order, and the broadcasts that could not be
    /// held (not among `sent`), to send now; from here on live messages are
    /// pushed at once. [`Finish::ReadAgain`] if a live direct message could
    /// not be held since the mailbox was last read; [`Finish::Gone`] if the
    /// session is no longer on `out` (its new connection's redelivery has
    /// the held messages).
    pub(crate) fn finish_redelivery(
        &self,
        session: &Session,
        out: &Outbox,
        sent: &[(u64, Bytes)],
    ) -> Finish {
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let log = self.log();
        let mut st = session.state();
        if !st.conn.as_ref().is_some_and(|c| c.same(out)) {
            return Finish::Gone;
        }
        let Some((held, overflowed)) = st.redelivery.finish() else {
            return Finish::ReadAgain;
        };
        let extra = if overflowed {
            let held_numbers: Vec<u64> = held.iter().filter_map(Held::broadcast).collect();
            log.owed(&st.owed, session.user)
                .into_iter()
                .filter(|(n, _)| !held_numbers.contains(n) && !sent.iter().any(|(s, _)| s == n))
                .map(|(_, b)| b)
                .collect()
        } else {
            Vec::new()
        };
        Finish::Done(held, extra)
    }

    /// `session`'s client acknowledged broadcast `delivery`. The session
    /// keeps positions in the log, not numbers (see [`Log`]): the log is
    /// asked for the position, and let go before the session is locked.
    pub(crate) fn ack_broadcast(&self, session: &Session, delivery: u64) {
        let (position, first, next) = {
            let log = self.log();
            (log.position(delivery), log.first(), log.next())
        };
        let Some(position) = position else {
            return;
        };
        if session.state().owed.done(position, first, next, self.keep) {
            let log = self.log();
            session.state().owed.tidy(&log);
        }
    }

    /// Whether `user` has a session on a connection now.
    pub(crate) fn is_attached(&self, user: u64) -> bool {
        self.lock()
            .by_user
            .get(&user)
            .is_some_and(|s| s.is_attached())
    }

    /// Registers a new session. A session of the same user that is on a
    /// connection refuses it; one whose client is away is replaced and
    /// returned, for the caller to end.
    pub(crate) fn insert(&self, session: Arc<Session>) -> Result<Option<Arc<Session>>, NameInUse> {
        let mut s = self.lock();
        let replaced = match s.by_user.get(&session.user) {
            Some(old) if old.is_attached() => return Err(NameInUse),
            Some(old) => Some(old.clone()),
            None => None,
        };
        if let Some(old) = &replaced {
            s.by_id.remove(&old.id);
        }
        s.by_user.insert(session.user, session.clone());
        s.by_id.insert(session.id, session);
        Ok(replaced)
    }

    /// The session of `user` here, if any.
    pub(crate) fn of_user(&self, user: u64) -> Option<Arc<Session>> {
        self.lock().by_user.get(&user).cloned()
    }

    /// Removes and returns the session with this number (it moved to
    /// another node).
    pub(crate) fn remove(&self, session: u64) -> Option<Arc<Session>> {
        let mut s = self.lock();
        let removed = s.by_id.remove(&session)?;
        if s.by_user
            .get(&removed.user)
            .is_some_and(|x| x.id == removed.id)
        {
            s.by_user.remove(&removed.user);
        }
        Some(removed)
    }

    /// The broadcasts `session` is owed now (number, packet), in order, to
    /// hand over to the node it moves to.
    pub(crate) fn owed_now(&self, session: &Session) -> Vec<(u64, Bytes)> {
        let log = self.log();
        let st = session.state();
        log.owed(&st.owed, session.user)
    }

    /// The live session with this number.
    pub(crate) fn get(&self, session: u64) -> Option<Arc<Session>> {
        self.lock().by_id.get(&session).cloned()
    }

    /// Users whose session is on a connection now.
    pub(crate) fn online_users(&self) -> Vec<u64> {
        let s = self.lock();
        let mut users: Vec<u64> = s
            .by_user
            .values()
            .filter(|session| session.is_attached())
            .map(|session| session.user)
            .collect();
        users.sort_unstable();
        users
    }

    /// Every live session, for sweeps that visit each one.
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.lock().by_id.values().cloned().collect()
    }

    /// Pushes encoded direct message `delivery` to `user`'s connection, if
    /// there is one.
    pub(crate) fn deliver(&self, user: u64, delivery: u64, bytes: Bytes) {
        let session = self.lock().by_user.get(&user).cloned();
        if let Some(session) = session {
            session.push_direct(delivery, bytes);
        }
    }

    /// [`Hub::deliver`] if `user`'s session here is on a connection;
    /// false (and nothing done) otherwise, for the bus to carry it to the
    /// process that has the user.
    pub(crate) fn deliver_if_attached(&self, user: u64, delivery: u64, bytes: Bytes) -> bool {
        let session = self
            .lock()
            .by_user
            .get(&user)
            .filter(|s| s.is_attached())
            .cloned();
        match session {
            Some(session) => {
                session.push_direct(delivery, bytes);
                true
            }
            None => false,
        }
    }

    /// Logs broadcasts of `sender`, as (delivery number, encoded packet) in
    /// order, for redelivery, and pushes them to every session on a
    /// connection but the sender's. Several at once reach each connection
    /// in one write; a session whose client is away costs nothing here.
    pub(crate) fn broadcast(&self, sender: &Session, batch: &[(u64, Bytes)]) {
        self.fan_out(sender.user, Some(sender), batch);
    }

    /// [`Hub::broadcast`] of broadcasts that `sender` sent through another
    /// process: they reach every session here but `sender`'s own. A
    /// number seen already (the bus repeated it, or a catch-up read it
    /// again) is not sent again. Returns how many were new.
    pub(crate) fn broadcast_from_afar(&self, sender: u64, batch: &[(u64, Bytes)]) -> usize {
        self.fan_out(sender, None, batch)
    }

    fn fan_out(&self, user: u64, sender: Option<&Session>, batch: &[(u64, Bytes)]) -> usize {
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let (positions, first, next) = {
            let mut log = self.log();
            let positions: Vec<Option<u64>> = batch
                .iter()
                .map(|(delivery, bytes)| log.insert(*delivery, user, bytes.clone()))
                .collect();
            (positions, log.first(), log.next())
        };
        if let Some(sender) = sender {
            let tidy = {
                let mut st = sender.state();
                positions
                    .iter()
                    .flatten()
                    .fold(false, |t, at| st.owed.done(*at, first, next, self.keep) | t)
            };
            if tidy {
                let log = self.log();
                sender.state().owed.tidy(&log);
            }
        }
        let batch: Vec<&(u64, Bytes)> = batch
            .iter()
            .zip(&positions)
            .filter(|(_, at)| at.is_some())
            .map(|(b, _)| b)
            .collect();
        if batch.is_empty() {
            return 0;
        }
        let sessions: Vec<Arc<Session>> = self.lock().by_id.values().cloned().collect();
        let frames: Vec<Bytes> = batch.iter().map(|(_, b)| b.clone()).collect();
        let mut sent = 0;
        let others = sessions.iter().filter(|s| match sender {
            Some(sender) => s.id != sender.id,
            None => s.user != user,
        });
        for session in others {
            if !session.is_attached() {
                continue;
            }
            let mut st = session.state();
            // A session being redelivered holds these for after its stored
            // mailbox, in order.
            if st.redelivery.is_running() {
                for (n, bytes) in &batch {
                    st.redelivery.live_broadcast(*n, bytes.clone());
                }
                continue;
            }
            if let Some(conn) = &st.conn {
                conn.send_all(&frames);
                sent += frames.len() as u64;
            }
        }
        metrics::counter!(names::DELIVERIES, "path" => "live_broadcast").increment(sent);
        batch.len()
    }

    /// Removes and returns the sessions silent for `timeout` or longer.
    pub(crate) fn take_expired(&self, timeout: Duration) -> Vec<Arc<Session>> {
        let now = now_ms();
        let timeout = timeout.as_millis() as u64;
        let mut s = self.lock();
        let expired: Vec<Arc<Session>> = s
            .by_id
            .values()
            .filter(|session| {
                now.saturating_sub(session.last_seen.load(Ordering::Relaxed)) >= timeout
            })
            .cloned()
            .collect();
        for session in &expired {
            s.by_id.remove(&session.id);
            if s.by_user
                .get(&session.user)
                .is_some_and(|x| x.id == session.id)
            {
                s.by_user.remove(&session.user);
            }
        }
        expired
    }

    /// Removes and returns every session (at shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        let mut s = self.lock();
        s.by_user.clear();
        s.by_id.drain().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Budget;
    use proto::limits::BROADCAST_BIT;

    fn session(hub: &Hub, id: u64, user: u64) -> Arc<Session> {
        let s = Session::new(
            id,
            user,
            format!("u{user}"),
            TokenBucket::new(0, 1),
            hub.new_owed(),
        );
        let s = Arc::new(s);
        hub.insert(s.clone()).map_err(|_| "name in use").unwrap();
        s
    }

    fn outbox() -> Outbox {
        Outbox::new(1 << 20, Budget::new(1 << 30)).0
    }

    /// What another server's broadcast does here: it reaches everyone but
    /// the sender's user, once however often the bus repeats it, and is
    /// owed by its position, not its number.
    #[test]
    fn a_broadcast_from_afar_reaches_all_but_its_sender_once() {
        let hub = Hub::new(10);
        let sender = session(&hub, 1, 100);
        let receiver = session(&hub, 2, 200);
        for s in [&sender, &receiver] {
            let (_, owed) = hub.attach(s, outbox()).unwrap();
            let out = s.state().conn.clone().unwrap();
            assert!(matches!(
                hub.finish_redelivery(s, &out, &owed),
                Finish::Done(..)
            ));
        }
        let high = (BROADCAST_BIT | 50, Bytes::from_static(b"late"));
        hub.broadcast(&sender, std::slice::from_ref(&high));
        let low = (BROADCAST_BIT | 7, Bytes::from_static(b"from afar"));
        hub.broadcast_from_afar(100, std::slice::from_ref(&low));
        hub.broadcast_from_afar(100, std::slice::from_ref(&low));
        // The receiver owes both, in arrival order, each once; the sender
        // neither.
        let owed = |s: &Session| hub.log().owed(&s.state().owed, s.user);
        assert_eq!(owed(&receiver), vec![high.clone(), low.clone()]);
        assert!(owed(&sender).is_empty());
        hub.ack_broadcast(&receiver, low.0);
        assert_eq!(owed(&receiver), vec![high]);
    }

    #[test]
    fn a_broadcast_held_before_attach_goes_out_once_and_only_on_the_new_connection() {
        let hub = Hub::new(10);
        let sender = session(&hub, 1, 100);
        let receiver = session(&hub, 2, 200);
        // The receiver's session has just begun: what arrives is held.
        let b = (BROADCAST_BIT | 1, Bytes::from_static(b"hi"));
        hub.broadcast(&sender, std::slice::from_ref(&b));
        let first = outbox();
        let (_, owed) = hub.attach(&receiver, first.clone()).unwrap();
        assert!(owed.is_empty(), "held, so not owed as well");
        // The session moves on before the first redelivery finishes: the
        // first cannot take what the second will send.
        let second = outbox();
        let (_, owed2) = hub.attach(&receiver, second.clone()).unwrap();
        assert!(matches!(
            hub.finish_redelivery(&receiver, &first, &owed),
            Finish::Gone
        ));
        match hub.finish_redelivery(&receiver, &second, &owed2) {
            Finish::Done(held, extra) => {
                assert_eq!(held.len(), 1);
                assert!(extra.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
