//! Sending a user what they have not acknowledged, when their session
//! starts or moves to a new connection.
//!
//! The stored mailbox is read a page at a time and sent ahead of the
//! client's acknowledgements by at most a window of messages, so memory
//! stays bounded whatever the mailbox holds, and it runs as a task of its
//! own: the connection's reader goes on reading acknowledgements and
//! keepalives meanwhile, and the session stays alive while its client
//! reads. Then the broadcasts owed when the session attached follow.
//!
//! Messages that arrive live meanwhile, direct or broadcast, are held
//! ([`Redelivery`]) and sent after, in the order they arrived, so that a
//! sender's messages keep their order and none is sent twice: a direct
//! message is committed before it is pushed live, so the mailbox read may
//! find it too, and exactly one of the two sends it. Past [`HELD_CAP`]
//! held messages, direct ones are left to the store (read again) and
//! broadcasts to the server's log.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use proto::{ErrorCode, Packet};

use crate::context::Context;
use crate::hub::{Finish, Session};
use crate::observe::names;
use crate::outbox::{encode, Outbox};

/// Live messages held during one redelivery, at most.
const HELD_CAP: usize = 1024;
/// Failed mailbox reads tried again (after 0.1, 0.2, 0.4 s).
const READ_RETRIES: u32 = 3;

/// A message that arrived live while a redelivery ran.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    /// A direct message: its delivery number and packet.
    Direct(u64, Bytes),
    /// A broadcast: its number and packet.
    Broadcast(u64, Bytes),
}

impl Held {
    /// The broadcast number, for a broadcast.
    pub(crate) fn broadcast(&self) -> Option<u64> {
        match self {
            Held::Broadcast(n, _) => Some(*n),
            Held::Direct(..) => None,
        }
    }

    /// The packet.
    fn bytes(self) -> Bytes {
        match self {
            Held::Direct(_, b) | Held::Broadcast(_, b) => b,
        }
    }
}

/// Where one session's redelivery stands; kept in the session's state. Its
/// working state is boxed and dropped when it ends, so an idle session
/// carries a pointer and a number.
#[derive(Debug, Default)]
pub(crate) struct Redelivery {
    /// The highest stored message sent; a live push of one at or below it
    /// comes after the read that sent it, and is dropped.
    sent_upto: u64,
    running: Option<Box<Running>>,
}

/// A redelivery under way.
#[derive(Debug, Default)]
struct Running {
    /// A live direct message was not held: the store must be read again
    /// before the redelivery may end.
    missed: bool,
    /// A live broadcast was not held: the log supplies it at the end.
    broadcasts_overflowed: bool,
    /// Stored messages sent and not yet acknowledged, in increasing order.
    in_flight: VecDeque<u64>,
    held: VecDeque<Held>,
}

impl Redelivery {
    /// A redelivery that has just started.
    pub(crate) fn started() -> Self {
        Self {
            sent_upto: 0,
            running: Some(Box::default()),
        }
    }

    /// A redelivery starts on a new connection. What was held since the
    /// session began (or since a redelivery to an earlier connection
    /// began) stays held; what was sent is sent again.
    pub(crate) fn restart(&mut self) {
        self.sent_upto = 0;
        match &mut self.running {
            Some(r) => r.in_flight.clear(),
            None => self.running = Some(Box::default()),
        }
    }

    /// Whether broadcast `number` is held.
    pub(crate) fn holds_broadcast(&self, number: u64) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.held.iter().any(|h| h.broadcast() == Some(number)))
    }

    /// Whether a redelivery is running.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// A live direct message: the packet to push now, or `None` when it is
    /// held, left to the store, or sent already.
    pub(crate) fn live_direct(&mut self, delivery: u64, bytes: Bytes) -> Option<Bytes> {
        if delivery <= self.sent_upto {
            return None;
        }
        let Some(r) = &mut self.running else {
            return Some(bytes);
        };
        if r.held.len() < HELD_CAP {
            r.held.push_back(Held::Direct(delivery, bytes));
        } else {
            r.missed = true;
        }
        None
    }

    /// A live broadcast while the redelivery runs: held, or left to the log.
    pub(crate) fn live_broadcast(&mut self, number: u64, bytes: Bytes) {
        if let Some(r) = &mut self.running {
            if r.held.len() < HELD_CAP {
                r.held.push_back(Held::Broadcast(number, bytes));
            } else {
                r.broadcasts_overflowed = true;
            }
        }
    }

    /// The bus may have lost live direct messages: true if a redelivery
    /// must start to read the stored mailbox again (live messages are held
    /// meanwhile); false if one is running already, which now reads the
    /// rest of the store before it ends.
    pub(crate) fn catch_up(&mut self) -> bool {
        match &mut self.running {
            Some(r) => {
                r.missed = true;
                false
            }
            None => {
                self.running = Some(Box::default());
                true
            }
        }
    }

    /// Stored message `delivery` is about to be sent: false when it is
    /// held (it goes out later, in arrival order), else it is recorded.
    pub(crate) fn take_stored(&mut self, delivery: u64) -> bool {
        if let Some(r) = &mut self.running {
            let held = r
                .held
                .iter()
                .any(|h| matches!(h, Held::Direct(d, _) if *d == delivery));
            if held {
                return false;
            }
            r.in_flight.push_back(delivery);
        }
        self.sent_upto = self.sent_upto.max(delivery);
        true
    }

    /// Stored messages sent and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> usize {
        self.running.as_ref().map_or(0, |r| r.in_flight.len())
    }

    /// The client acknowledged `delivery`; true if it was in flight.
    pub(crate) fn acked(&mut self, delivery: u64) -> bool {
        let Some(r) = &mut self.running else {
            return false;
        };
        match r.in_flight.binary_search(&delivery) {
            Ok(at) => {
                r.in_flight.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The store had nothing more: `None` if it must be read again, else
    /// the held messages in order and whether broadcasts overflowed; live
    /// messages are pushed at once from now on.
    pub(crate) fn finish(&mut self) -> Option<(Vec<Held>, bool)> {
        if let Some(r) = &mut self.running {
            if std::mem::take(&mut r.missed) {
                return None;
            }
        }
        let r = self.running.take().unwrap_or_default();
        Some((r.held.into_iter().collect(), r.broadcasts_overflowed))
    }
}

/// Whether `session` is still on the connection `out` feeds. A redelivery
/// stops once it is not (the connection ended, or the session moved to
/// another, which has a redelivery of its own); whoever moves the session
/// wakes it ([`Session::acked`]) so it notices. Nothing per connection
/// keeps the task: it ends by itself, and its memory with it.
fn still_on(session: &Session, out: &Outbox) -> bool {
    session.state().conn.as_ref().is_some_and(|c| c.same(out))
}

/// Whether `session`'s user has no stored message waiting. No barrier is
/// needed: acknowledgements still queued can only remove messages.
pub(crate) async fn nothing_stored(ctx: &Context, session: &Session) -> bool {
    ctx.store
        .queued_page(session.user, 0, 1)
        .await
        .is_ok_and(|page| page.is_empty())
}

/// Redelivers to `out`, the connection `session` has just moved to;
/// `owed` are the broadcasts it was owed at that moment, `stored` whether
/// messages are stored for it, if known already. Most sign-ins find
/// nothing waiting: that is finished here, sparing a task whose short life
/// left memory behind (500 bytes per idle session); what arrived live in
/// the meantime was held, and goes out now. Anything else runs in a task.
pub(crate) async fn begin(
    ctx: &Arc<Context>,
    session: Arc<Session>,
    out: &Outbox,
    owed: Vec<(u64, Bytes)>,
    stored: Option<bool>,
) {
    let stored = match stored {
        Some(s) => s,
        None => !nothing_stored(ctx, &session).await,
    };
    if owed.is_empty() && !stored {
        match ctx.hub.finish_redelivery(&session, out, &owed) {
            Finish::Done(held, extra) => {
                let frames: Vec<Bytes> = held.into_iter().map(Held::bytes).chain(extra).collect();
                out.send_all(&frames);
                return;
            }
            Finish::Gone => return,
            Finish::ReadAgain => {}
        }
    }
    start(ctx.clone(), session, out.clone(), owed);
}

/// Sends `session` again what its stored mailbox holds, if it is on a
/// connection, because the bus may have lost live messages to it (see
/// [`crate::bus`]). What it already has comes again, and the client core
/// drops it; the mailbox is read as a redelivery is, paced by the client's
/// acknowledgements, with live messages held meanwhile. True if the
/// session is on a connection.
pub(crate) fn catch_up(ctx: &Arc<Context>, session: Arc<Session>) -> bool {
    let out = {
        let mut st = session.state();
        let Some(out) = st.conn.clone() else {
            return false;
        };
        if !st.redelivery.catch_up() {
            return true;
        }
        out
    };
    start(ctx.clone(), session, out, Vec::new());
    true
}

/// Starts redelivering to `out`, the connection `session` has just moved
/// to; `owed` are the broadcasts it was owed at that moment.
///
/// The stored mailbox is sent up to the last direct message committed
/// when the session attached (read right after, so before any message
/// that can have missed being held): later ones arrive live and are held,
/// and go out after it, in the order they arrived. With several servers
/// on one database, the last number any of them has taken
/// ([`crate::store::Store::delivery_horizon`]).
fn start(ctx: Arc<Context>, session: Arc<Session>, out: Outbox, owed: Vec<(u64, Bytes)>) {
    let local = ctx.store.last_delivery();
    tokio::spawn(async move {
        let mut upto = ctx.store.delivery_horizon(local).await;
        let mut after = 0;
        let finished = loop {
            // A failed read (a batch that failed for someone else's
            // statement, say) is tried again a few times, from where it
            // stopped; after that what is stored waits for the next sign-in.
            for retry in 0..=READ_RETRIES {
                match mailbox(&ctx, &session, &out, &mut after, upto).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, user = session.user, retry, "could not read the mailbox");
                        tokio::time::sleep(std::time::Duration::from_millis(100 << retry)).await;
                    }
                }
            }
            if !still_on(&session, &out) {
                return;
            }
            match ctx.hub.finish_redelivery(&session, &out, &owed) {
                Finish::Done(held, extra) => break (held, extra),
                // A direct message could not be held: read the rest of the
                // store, later messages included.
                Finish::ReadAgain => upto = u64::MAX,
                Finish::Gone => return,
            }
        };
        let (held, extra) = finished;
        let all = owed
            .into_iter()
            .map(|(_, b)| b)
            .chain(held.into_iter().map(Held::bytes))
            .chain(extra);
        for bytes in all {
            if !still_on(&session, &out) || !paced_send(&ctx, &out, bytes).await {
                return;
            }
        }
    });
}

/// Waits until the outbox has room for `bytes`, then queues it; false when
/// the connection is closing (or was cut off for not reading meanwhile).
async fn paced_send(ctx: &Context, out: &Outbox, bytes: Bytes) -> bool {
    let wait = ctx.config.write_timeout();
    if tokio::time::timeout(wait, out.room_for(bytes.len()))
        .await
        .is_err()
    {
        out.close(
            ErrorCode::SlowReader,
            format!("nothing was read for {:.1} s", wait.as_secs_f64()),
        );
        return false;
    }
    let sent = out.send(bytes);
    if sent {
        metrics::counter!(names::DELIVERIES, "path" => "redelivery").increment(1);
    }
    sent
}

/// Sends the stored mailbox past `after` and up to `upto`.
async fn mailbox(
    ctx: &Context,
    session: &Session,
    out: &Outbox,
    after: &mut u64,
    upto: u64,
) -> Result<(), crate::store::StoreError> {
    // Acknowledgements sent on the previous connection are committed with
    // the writer's next batch; the mailbox is read after them, so what was
    // acknowledged is not sent again.
    ctx.store.barrier().await?;
    let window = ctx.config.redelivery_window.max(1);
    let page = window.div_ceil(2);
    loop {
        // Wait until half the window has been acknowledged.
        loop {
            let acked = session.acked.notified();
            if !still_on(session, out) {
                return Ok(());
            }
            if session.state().redelivery.in_flight() + page <= window {
                break;
            }
            acked.await;
        }
        if *after >= upto {
            return Ok(());
        }
        let queued = ctx.store.queued_page(session.user, *after, page).await?;
        if queued.is_empty() {
            return Ok(());
        }
        for q in queued {
            if q.delivery > upto {
                return Ok(());
            }
            *after = q.delivery;
            match session.redelivery_on(out, |r| r.take_stored(q.delivery)) {
                None => return Ok(()),
                Some(false) => continue,
                Some(true) => {}
            }
            let packet = Packet::IncomingMessage {
                from: q.from,
                message: q.delivery,
                body: q.body,
            };
            let Some(bytes) = encode(&packet) else {
                continue;
            };
            if !still_on(session, out) || !paced_send(ctx, out, bytes).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: u64) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    #[test]
    fn a_message_found_by_the_read_and_pushed_live_is_sent_once() {
        let mut r = Redelivery::started();
        // Read first, pushed live after: the push is dropped.
        assert!(r.take_stored(5));
        assert_eq!(r.live_direct(5, b(5)), None);
        // Pushed live first (held), read after: the read skips it.
        assert_eq!(r.live_direct(7, b(7)), None);
        assert!(!r.take_stored(7));
        r.live_broadcast(1 << 63, b(1));
        let (held, overflowed) = r.finish().unwrap();
        assert!(!overflowed);
        let held: Vec<Bytes> = held.into_iter().map(Held::bytes).collect();
        assert_eq!(held, vec![b(7), b(1)], "held in arrival order");
        // After the end, live messages go at once, except ones sent already.
        assert_eq!(r.live_direct(9, b(9)), Some(b(9)));
        assert_eq!(r.live_direct(5, b(5)), None);
    }

    #[test]
    fn a_restart_keeps_what_was_held() {
        let mut r = Redelivery::started();
        assert_eq!(r.live_direct(3, b(3)), None);
        r.take_stored(2);
        r.restart();
        assert_eq!(r.in_flight(), 0);
        assert!(r.take_stored(2), "sent again on the new connection");
        let (held, _) = r.finish().unwrap();
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn past_the_cap_direct_messages_are_left_to_the_store() {
        let mut r = Redelivery::started();
        for d in 1..=HELD_CAP as u64 {
            r.live_direct(d, b(d));
        }
        r.live_direct(5000, b(5000));
        r.live_broadcast(6000, b(6000));
        assert!(r.finish().is_none(), "the store must be read again");
        let (held, overflowed) = r.finish().unwrap();
        assert_eq!(held.len(), HELD_CAP);
        assert!(overflowed);
    }

    #[test]
    fn a_catch_up_starts_a_read_or_makes_a_running_one_read_again() {
        let mut r = Redelivery::started();
        assert!(!r.catch_up(), "one runs already");
        assert!(r.finish().is_none(), "it reads the store again first");
        assert!(r.finish().is_some());
        assert!(!r.is_running());
        assert!(r.catch_up(), "none runs: one starts");
        assert!(r.is_running());
        assert_eq!(r.live_direct(9, b(9)), None, "held while it reads");
        let (held, _) = r.finish().unwrap();
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn acknowledgements_free_the_window() {
        let mut r = Redelivery::started();
        for d in [3, 4, 9] {
            r.take_stored(d);
        }
        assert_eq!(r.in_flight(), 3);
        assert!(r.acked(4));
        assert!(!r.acked(4));
        assert!(!r.acked(100));
        assert_eq!(r.in_flight(), 2);
    }
}
