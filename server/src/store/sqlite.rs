//! The SQLite side of [`super::Store`]: one connection on one thread,
//! committing each batch of queued requests in a single transaction.

use std::path::Path;
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Command, FileMeta, Queued, Recovered, StoreError, Stored};

/// Requests committed together at most; bounds the latency of the first.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
-- Every session number ever issued, so none is issued twice.
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
-- Direct messages not yet acknowledged by their recipient. The id is the
-- delivery number; AUTOINCREMENT keeps ids of deleted rows from returning.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages(recipient, id);
CREATE TABLE IF NOT EXISTS broadcasts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
-- (sender, message number) pairs already accepted, for deduplication.
CREATE TABLE IF NOT EXISTS sent (
    sender INTEGER NOT NULL,
    number INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sender, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploader INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens the database, applies the schema and drops unfinished uploads.
pub(super) fn open(path: &Path, full_sync: bool) -> Result<(Connection, Recovered), StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if full_sync { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    let incomplete_files = conn
        .prepare("SELECT id FROM files WHERE complete = 0")?
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| id as u64)
        .collect();
    conn.execute("DELETE FROM files WHERE complete = 0", [])?;
    let bytes_stored: i64 =
        conn.query_row("SELECT COALESCE(SUM(size), 0) FROM files", [], |r| r.get(0))?;
    Ok((
        conn,
        Recovered {
            incomplete_files,
            bytes_stored: bytes_stored as u64,
        },
    ))
}

/// Serves requests until every [`super::Store`] handle is dropped.
/// Recipients already seen in `users`. Users are never deleted, so a hit
/// spares a direct message the lookup; the set is cleared when a batch
/// fails to commit, since it may name a user created in that batch.
type KnownUsers = std::collections::HashSet<u64>;

pub(super) fn run(mut conn: Connection, rx: Receiver<Command>) {
    let mut users = KnownUsers::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut users, batch);
    }
    tracing::debug!("store closed");
}

/// Answers held until the transaction commits, so nothing is acknowledged
/// before it is durable.
type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

fn commit_batch(conn: &mut Connection, users: &mut KnownUsers, batch: Vec<Command>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let err = StoreError::Sqlite(e);
            tracing::error!(error = %err, "cannot begin a transaction");
            for command in batch {
                answer(command, Err(&err));
            }
            return;
        }
    };
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    for command in batch {
        replies.push(execute(&tx, users, command));
    }
    match tx.commit() {
        Ok(()) => replies.into_iter().for_each(|r| r(Ok(()))),
        Err(e) => {
            users.clear();
            let err = StoreError::Sqlite(e);
            tracing::error!(error = %err, "commit failed");
            replies.into_iter().for_each(|r| r(Err(&err)));
        }
    }
}

/// The same failure for every request of a batch that could not commit.
fn copy_err(e: &StoreError) -> StoreError {
    StoreError::Batch(e.to_string())
}

/// Builds the reply for a command's result, to be sent after the commit.
fn deferred<T: Send + 'static>(
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> Reply {
    Box::new(move |commit| {
        let out = match (commit, result) {
            (Ok(()), r) => r,
            (Err(e), _) => Err(copy_err(e)),
        };
        let _ = reply.send(out);
    })
}

fn answer(command: Command, err: Result<(), &StoreError>) {
    let e = || err.err().map(copy_err).unwrap_or(StoreError::Closed);
    match command {
        Command::SignIn(_, r) | Command::NewSession(_, r) => drop(r.send(Err(e()))),
        Command::UserName(_, r) => drop(r.send(Err(e()))),
        Command::StoreDirect { reply, .. } | Command::StoreBroadcast { reply, .. } => {
            drop(reply.send(Err(e())))
        }
        Command::Ack(_, _, r) | Command::CompleteFile(_, r) | Command::DiscardFile(_, r) => {
            drop(r.send(Err(e())))
        }
        Command::QueuedFor(_, r) => drop(r.send(Err(e()))),
        Command::CreateFile { reply, .. } => drop(reply.send(Err(e()))),
        Command::File(_, r) => drop(r.send(Err(e()))),
        Command::Files(r) => drop(r.send(Err(e()))),
    }
}

fn execute(tx: &rusqlite::Transaction<'_>, users: &mut KnownUsers, command: Command) -> Reply {
    match command {
        Command::SignIn(name, r) => deferred(r, sign_in(tx, &name)),
        Command::NewSession(user, r) => deferred(r, new_session(tx, user)),
        Command::UserName(user, r) => deferred(r, user_name(tx, user)),
        Command::StoreDirect {
            from,
            number,
            to,
            body,
            reply,
        } => deferred(reply, store_direct(tx, users, from, number, to, &body)),
        Command::StoreBroadcast {
            from,
            number,
            body,
            reply,
        } => deferred(reply, store_broadcast(tx, from, number, &body)),
        Command::Ack(recipient, delivery, r) => deferred(
            r,
            tx.prepare_cached("DELETE FROM messages WHERE id = ?1 AND recipient = ?2")
                .and_then(|mut s| s.execute(params![delivery as i64, recipient as i64]))
                .map(drop)
                .map_err(StoreError::from),
        ),
        Command::QueuedFor(user, r) => deferred(r, queued_for(tx, user)),
        Command::CreateFile {
            name,
            size,
            uploader,
            reply,
        } => deferred(
            reply,
            tx.execute(
                "INSERT INTO files (name, size, uploader, complete, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
                params![name, size, uploader as i64, now()],
            )
            .map(|_| tx.last_insert_rowid() as u64)
            .map_err(StoreError::from),
        ),
        Command::CompleteFile(file, r) => deferred(
            r,
            tx.execute("UPDATE files SET complete = 1 WHERE id = ?1", [file as i64])
                .map(drop)
                .map_err(StoreError::from),
        ),
        Command::DiscardFile(file, r) => deferred(
            r,
            tx.execute("DELETE FROM files WHERE id = ?1 AND complete = 0", [file as i64])
                .map(drop)
                .map_err(StoreError::from),
        ),
        Command::File(file, r) => deferred(
            r,
            tx.query_row(
                "SELECT name, size, complete FROM files WHERE id = ?1",
                [file as i64],
                |row| {
                    Ok(FileMeta {
                        name: row.get(0)?,
                        size: row.get::<_, i64>(1)? as u32,
                        complete: row.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .optional()
            .map_err(StoreError::from),
        ),
        Command::Files(r) => deferred(r, files(tx)),
    }
}

fn sign_in(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    if let Some(id) = tx
        .prepare_cached("SELECT id FROM users WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, i64>(0))
        .optional()?
    {
        return Ok(id as u64);
    }
    tx.execute(
        "INSERT INTO users (name, created_at) VALUES (?1, ?2)",
        params![name, now()],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}

fn new_session(tx: &rusqlite::Transaction<'_>, user: u64) -> Result<u64, StoreError> {
    loop {
        // rand's thread generator is a CSPRNG seeded from the OS. SQLite
        // stores signed 64-bit integers, so the number is kept as its bits.
        let session: u64 = rand::random();
        if session == 0 {
            continue;
        }
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO sessions (id, user, created_at) VALUES (?1, ?2, ?3)",
            params![session as i64, user as i64, now()],
        )?;
        if inserted == 1 {
            return Ok(session);
        }
    }
}

fn user_name(tx: &rusqlite::Transaction<'_>, user: u64) -> Result<Option<String>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT name FROM users WHERE id = ?1")?
        .query_row([user as i64], |r| r.get(0))
        .optional()?)
}

/// Records (sender, number); false if it was recorded before.
fn first_time(tx: &rusqlite::Transaction<'_>, from: u64, number: u64) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO sent (sender, number, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![from as i64, number as i64, now()])?;
    Ok(n == 1)
}

fn store_direct(
    tx: &rusqlite::Transaction<'_>,
    users: &mut KnownUsers,
    from: u64,
    number: u64,
    to: u64,
    body: &[u8],
) -> Result<Stored, StoreError> {
    if !users.contains(&to) {
        let exists = tx
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row([to as i64], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(Stored::UnknownRecipient);
        }
        users.insert(to);
    }
    if !first_time(tx, from, number)? {
        return Ok(Stored::Duplicate);
    }
    tx.prepare_cached(
        "INSERT INTO messages (recipient, sender, body, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![to as i64, from as i64, body, now()])?;
    Ok(Stored::New(tx.last_insert_rowid() as u64))
}

fn store_broadcast(
    tx: &rusqlite::Transaction<'_>,
    from: u64,
    number: u64,
    body: &[u8],
) -> Result<Stored, StoreError> {
    if !first_time(tx, from, number)? {
        return Ok(Stored::Duplicate);
    }
    tx.prepare_cached("INSERT INTO broadcasts (sender, body, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![from as i64, body, now()])?;
    Ok(Stored::New(tx.last_insert_rowid() as u64))
}

fn queued_for(tx: &rusqlite::Transaction<'_>, user: u64) -> Result<Vec<Queued>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT id, sender, body FROM messages WHERE recipient = ?1 ORDER BY id")?;
    let rows = stmt.query_map([user as i64], |r| {
        Ok(Queued {
            delivery: r.get::<_, i64>(0)? as u64,
            from: r.get::<_, i64>(1)? as u64,
            body: Bytes::from(r.get::<_, Vec<u8>>(2)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn files(tx: &rusqlite::Transaction<'_>) -> Result<Vec<u64>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT id FROM files WHERE complete = 1 ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| id as u64)
        .collect())
}
