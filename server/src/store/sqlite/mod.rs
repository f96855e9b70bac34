//! The SQLite side of [`super::Store`]: one connection on one thread,
//! committing each batch of queued requests in a single transaction.

mod queries;
mod schema;
mod senders;

use std::collections::HashSet;
use std::sync::mpsc::Receiver;

use rusqlite::Connection;

use super::{Command, StoreError};
use senders::Senders;

pub(in crate::store) use schema::open;

/// Requests committed together at most; bounds the latency of the first.
const MAX_BATCH: usize = 1024;

/// Recipients already seen in `users`. Users are never deleted, so a hit
/// spares a direct message the lookup; the set is cleared when a batch
/// fails to commit, since it may name a user created in that batch.
type KnownUsers = HashSet<u64>;

/// The store thread's state.
struct Writer {
    conn: Connection,
    state: State,
}

/// What the writer remembers between requests.
struct State {
    users: KnownUsers,
    /// The last delivery number handed out; saved with each batch that
    /// used one, so numbers are never reused, even after the messages
    /// holding them are acknowledged and deleted.
    delivery: u64,
    senders: Senders,
}

/// Serves requests until every [`super::Store`] handle is dropped.
pub(super) fn run(conn: Connection, rx: Receiver<Command>) {
    let delivery = match conn.query_row(
        "SELECT value FROM counters WHERE name = 'delivery'",
        [],
        |r| r.get::<_, i64>(0),
    ) {
        Ok(v) => v as u64,
        Err(e) => {
            // Without the counter no message can be numbered safely: refuse
            // them all rather than risk reusing a number.
            tracing::error!(error = %e, "cannot read the delivery counter");
            u64::MAX
        }
    };
    let mut writer = Writer {
        conn,
        state: State {
            users: KnownUsers::new(),
            delivery,
            senders: Senders::default(),
        },
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        writer.commit_batch(batch);
    }
    tracing::debug!("store closed");
}

/// Answers held until the transaction commits, so nothing is acknowledged
/// before it is durable.
type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

impl Writer {
    fn commit_batch(&mut self, batch: Vec<Command>) {
        let Writer { conn, state } = self;
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let err = StoreError::Sqlite(e);
                tracing::error!(error = %err, "cannot begin a transaction");
                for command in batch {
                    queries::answer(command, Err(&err));
                }
                return;
            }
        };
        let first_delivery = state.delivery;
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        for command in batch {
            replies.push(queries::execute(&tx, state, command));
        }
        let counter = if state.delivery == first_delivery {
            Ok(())
        } else {
            tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'delivery'")
                .and_then(|mut s| s.execute([state.delivery as i64]))
                .map(drop)
        };
        // A failed batch leaves the delivery counter advanced: its numbers
        // are skipped, never handed out twice.
        let result = counter
            .and_then(|()| state.senders.save(&tx))
            .and_then(|()| tx.commit());
        state.senders.end_batch(result.is_ok());
        match result {
            Ok(()) => replies.into_iter().for_each(|r| r(Ok(()))),
            Err(e) => {
                state.users.clear();
                let err = StoreError::Sqlite(e);
                tracing::error!(error = %err, "commit failed");
                replies.into_iter().for_each(|r| r(Err(&err)));
            }
        }
    }
}
