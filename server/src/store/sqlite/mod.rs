//! The SQLite side of [`super::Store`]: one writing connection on one
//! thread, committing each batch of queued requests in a single
//! transaction, and one reading connection ([`reads`]) for the rest.

mod mailboxes;
mod queries;
pub(super) mod reads;
mod schema;
mod senders;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::mpsc::Receiver;

use super::command::{answer, Reply};
use super::{Command, StoreError, StoreLimits};
use crate::observe::names;
use mailboxes::Mailboxes;
use senders::Senders;

pub(in crate::store) use schema::{open, open_reader, SCHEMA};

/// SQLite's errors stay inside the engine: callers see a database error.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// Requests committed together at most; bounds the latency of the first.
const MAX_BATCH: usize = 1024;

/// Recipients already seen in `users`. Users are never deleted, so a hit
/// spares a direct message the lookup; the set is cleared when a batch
/// fails to commit, since it may name a user created in that batch.
type KnownUsers = HashSet<u64>;

/// Recipients remembered at most; past it the set starts again.
const MAX_KNOWN_USERS: usize = 100_000;

/// The store thread's state.
struct Writer {
    conn: Connection,
    state: State,
    /// The highest delivery number committed, for readers elsewhere.
    committed: Arc<AtomicU64>,
}

/// What the writer remembers between requests. Everything here that a
/// batch changes is either undone when the batch fails, or (the counters)
/// left advanced so that numbers are skipped, never reused.
struct State {
    users: KnownUsers,
    /// The last delivery number handed out to a direct message.
    delivery: u64,
    /// The last broadcast number handed out.
    broadcast: u64,
    senders: Senders,
    mailboxes: Mailboxes,
    limits: StoreLimits,
}

fn counter(conn: &Connection, name: &str) -> u64 {
    match conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(v) => v as u64,
        Err(e) => {
            // Without the counter nothing can be numbered safely: refuse
            // it all rather than risk reusing a number.
            tracing::error!(error = %e, name, "cannot read a counter");
            u64::MAX
        }
    }
}

/// Serves requests until every [`super::Store`] handle is dropped.
pub(super) fn run(
    conn: Connection,
    mut rx: Receiver<Command>,
    limits: StoreLimits,
    committed: Arc<AtomicU64>,
) {
    let mut writer = Writer::new(conn, limits);
    writer.committed = committed;
    writer
        .committed
        .store(writer.state.delivery, Ordering::Release);
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (size, started) = (batch.len(), std::time::Instant::now());
        let ok = writer.commit_batch(batch);
        metrics::histogram!(names::STORE_BATCH).record(size as f64);
        metrics::histogram!(names::STORE_COMMIT).record(started.elapsed().as_secs_f64());
        if !ok {
            metrics::counter!(names::STORE_FAILED).increment(1);
        }
    }
    tracing::debug!("store closed");
}

impl Writer {
    fn new(conn: Connection, limits: StoreLimits) -> Self {
        let delivery = counter(&conn, "delivery");
        let broadcast = counter(&conn, "broadcast");
        Writer {
            conn,
            committed: Arc::new(AtomicU64::new(0)),
            state: State {
                users: KnownUsers::new(),
                delivery,
                broadcast,
                senders: Senders::default(),
                mailboxes: Mailboxes::default(),
                limits,
            },
        }
    }

    /// Runs every request of `batch` in one transaction. If any statement
    /// fails, SQLite may already have rolled the transaction back, so
    /// nothing of the batch is committed and every request in it gets the
    /// error: a sender's resend is then stored, not taken for a duplicate.
    fn commit_batch(&mut self, batch: Vec<Command>) -> bool {
        let Writer { conn, state, .. } = self;
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let err = StoreError::from(e);
                tracing::error!(error = %err, "cannot begin a transaction");
                for command in batch {
                    answer(command, Err(&err));
                }
                return false;
            }
        };
        let (first_delivery, first_broadcast) = (state.delivery, state.broadcast);
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let mut failed: Option<StoreError> = None;
        for command in batch {
            if let Some(e) = &failed {
                answer(command, Err(e));
                continue;
            }
            match queries::execute(&tx, state, command) {
                Ok(reply) => replies.push(reply),
                Err((reply, e)) => {
                    tracing::error!(error = %e, "a statement failed; the batch is abandoned");
                    replies.push(reply);
                    failed = Some(e);
                }
            }
        }
        if state.users.len() > MAX_KNOWN_USERS {
            state.users = KnownUsers::new();
        }
        let result = match failed {
            Some(e) => Err(e),
            None => save_counters(&tx, state, first_delivery, first_broadcast)
                .and_then(|()| state.senders.save(&tx))
                .and_then(|()| tx.commit())
                .map_err(StoreError::from),
        };
        // A dropped, uncommitted transaction rolls back.
        state.senders.end_batch(result.is_ok());
        match result {
            Ok(()) => {
                self.committed.store(state.delivery, Ordering::Release);
                replies.into_iter().for_each(|r| r(Ok(())));
                true
            }
            Err(err) => {
                state.users.clear();
                state.mailboxes.clear();
                tracing::error!(error = %err, "batch not committed");
                replies.into_iter().for_each(|r| r(Err(&err)));
                false
            }
        }
    }
}

/// Saves the counters this batch advanced. A failed batch leaves them
/// advanced in memory: its numbers are skipped, never handed out twice.
fn save_counters(
    tx: &rusqlite::Transaction<'_>,
    state: &State,
    first_delivery: u64,
    first_broadcast: u64,
) -> rusqlite::Result<()> {
    for (name, first, now) in [
        ("delivery", first_delivery, state.delivery),
        ("broadcast", first_broadcast, state.broadcast),
    ] {
        if now != first {
            tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = ?2")?
                .execute(rusqlite::params![now as i64, name])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;
    use crate::store::Stored;

    fn direct(
        from: u64,
        number: u64,
        to: u64,
        body: Vec<u8>,
    ) -> (Command, oneshot::Receiver<Result<Stored, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        let c = Command::StoreDirect {
            from,
            number,
            to,
            body: Bytes::from(body),
            reply,
        };
        (c, rx)
    }

    fn user(w: &mut Writer, name: &str) -> u64 {
        let (reply, mut rx) = oneshot::channel();
        w.commit_batch(vec![Command::SignIn(name.into(), reply)]);
        rx.try_recv().unwrap().unwrap()
    }

    fn queued(w: &Writer, to: u64) -> usize {
        w.conn
            .query_row(
                "SELECT COUNT(*) FROM queued WHERE recipient = ?1",
                [to as i64],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
    }

    /// A statement that fails in the middle of a batch (the database file
    /// may not grow: SQLITE_FULL) fails the whole batch; the resend of a
    /// message from it is stored, not answered as a duplicate.
    #[test]
    fn a_failed_statement_fails_the_whole_batch_and_the_resend_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open(&dir.path().join("db"), false, 0).unwrap();
        let mut w = Writer::new(conn, StoreLimits::default());
        let (alice, bob) = (user(&mut w, "alice"), user(&mut w, "bob"));
        let pages: i64 = w
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        w.conn.pragma_update(None, "max_page_count", pages).unwrap();
        let (small, mut small_rx) = direct(alice, 1, bob, b"hi".to_vec());
        let (big, mut big_rx) = direct(alice, 2, bob, vec![7; 60_000]);
        let (after, mut after_rx) = direct(alice, 3, bob, b"after".to_vec());
        w.commit_batch(vec![small, big, after]);
        for rx in [&mut small_rx, &mut big_rx, &mut after_rx] {
            assert!(rx.try_recv().unwrap().is_err(), "every request fails");
        }
        assert_eq!(queued(&w, bob), 0, "nothing of the batch is committed");
        w.conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        let (small, mut small_rx) = direct(alice, 1, bob, b"hi".to_vec());
        let (big, mut big_rx) = direct(alice, 2, bob, vec![7; 60_000]);
        w.commit_batch(vec![small, big]);
        assert!(matches!(small_rx.try_recv().unwrap(), Ok(Stored::New(_))));
        assert!(matches!(big_rx.try_recv().unwrap(), Ok(Stored::New(_))));
        assert_eq!(queued(&w, bob), 2);
    }

    /// A recipient's mailbox takes messages up to its caps, and room comes
    /// back as they are acknowledged.
    #[test]
    fn a_full_mailbox_refuses_until_read() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open(&dir.path().join("db"), false, 0).unwrap();
        let limits = StoreLimits {
            mailbox_messages: 3,
            mailbox_bytes: 1000,
            ..StoreLimits::default()
        };
        let mut w = Writer::new(conn, limits);
        let (alice, bob) = (user(&mut w, "alice"), user(&mut w, "bob"));
        let mut outcomes = Vec::new();
        for n in 1..=4 {
            let (c, mut rx) = direct(alice, n, bob, b"x".to_vec());
            w.commit_batch(vec![c]);
            outcomes.push(rx.try_recv().unwrap().unwrap());
        }
        assert_eq!(outcomes[3], Stored::MailboxFull);
        let Stored::New(first) = outcomes[0] else {
            panic!("{outcomes:?}")
        };
        let (reply, _rx) = oneshot::channel();
        w.commit_batch(vec![Command::Ack(bob, first, reply)]);
        let (c, mut rx) = direct(alice, 4, bob, b"x".to_vec());
        w.commit_batch(vec![c]);
        assert!(matches!(rx.try_recv().unwrap(), Ok(Stored::New(_))));
        // Bytes count too.
        let (c, mut rx) = direct(alice, 5, bob, vec![1; 2000]);
        w.commit_batch(vec![c]);
        assert_eq!(rx.try_recv().unwrap().unwrap(), Stored::MailboxFull);
    }
}
