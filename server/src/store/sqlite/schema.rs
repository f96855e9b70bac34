//! The database's tables, and the steps that bring a data directory
//! written by an earlier version up to them.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};

use super::super::accepted::Accepted;
use super::super::{Recovered, StoreError};

pub(in crate::store) const SCHEMA: &str = "
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
-- Direct messages not yet acknowledged by their recipient, keyed the way
-- they are looked up (a recipient's queue, an acknowledgement): one B-tree
-- to insert into and delete from, instead of a table and an index. `id` is
-- the delivery number, from the `delivery` counter below, never reused.
CREATE TABLE IF NOT EXISTS queued (
    recipient INTEGER NOT NULL,
    id INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (recipient, id)
) WITHOUT ROWID;
-- Numbers handed out so far, by name.
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('delivery', 0);
-- Broadcasts are numbered from their own counter; their bodies live only
-- in the sessions they reach.
INSERT OR IGNORE INTO counters (name, value) VALUES ('broadcast', 0);
-- The message numbers each sender has had accepted, as ranges
-- (accepted.rs), so a message sent again is stored once.
CREATE TABLE IF NOT EXISTS senders (
    sender INTEGER PRIMARY KEY,
    numbers BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploader INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
-- Names protected by a password: the user, and its Argon2id hash as a PHC
-- string (algorithm, parameters and salt included).
CREATE TABLE IF NOT EXISTS accounts (
    user INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
);
-- Counting a user's files, for the per-user limit.
CREATE INDEX IF NOT EXISTS files_uploader ON files (uploader);
-- Pruning old session records.
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
";

/// Opens the reading connection, after [`open`] made the schema.
pub(in crate::store) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    // Opened read-write but refusing writes: a SQLITE_OPEN_READ_ONLY
    // connection may map the WAL index read-only, a path SQLite documents
    // as slower and with caveats.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    // A small page cache: reads are pages of one mailbox, a file's row.
    conn.pragma_update(None, "cache_size", -1024)?;
    Ok(conn)
}

/// Opens the database, applies the schema and drops unfinished uploads.
/// Complete files are charged at least `min_file_charge` bytes each.
pub(in crate::store) fn open(
    path: &Path,
    full_sync: bool,
    min_file_charge: u64,
) -> Result<(Connection, Recovered), StoreError> {
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
    migrate_messages(&conn)?;
    migrate_sent(&conn)?;
    migrate_broadcasts(&conn)?;
    let incomplete_files = conn
        .prepare("SELECT id FROM files WHERE complete = 0")?
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| id as u64)
        .collect();
    conn.execute("DELETE FROM files WHERE complete = 0", [])?;
    let bytes_stored: i64 = conn.query_row(
        "SELECT COALESCE(SUM(MAX(size, ?1)), 0) FROM files",
        [min_file_charge.min(i64::MAX as u64) as i64],
        |r| r.get(0),
    )?;
    Ok((
        conn,
        Recovered {
            incomplete_files,
            bytes_stored: bytes_stored as u64,
        },
    ))
}

/// Whether the database has a table of this name (one an earlier version
/// made, say).
fn has_table(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// Moves queued messages from the `messages` table of earlier versions
/// (a rowid table with an index) to `queued`, keeping their numbers.
fn migrate_messages(conn: &Connection) -> Result<(), StoreError> {
    let old = has_table(conn, "messages")?;
    if old {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO queued (recipient, id, sender, body, created_at)
                 SELECT recipient, id, sender, body, created_at FROM messages;
             UPDATE counters SET value = MAX(value,
                 (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'messages'),
                 (SELECT COALESCE(MAX(id), 0) FROM messages))
                 WHERE name = 'delivery';
             DROP TABLE messages;
             COMMIT;",
        )?;
        tracing::info!("moved queued messages to the current schema");
    }
    Ok(())
}

/// Replaces the `sent` table of earlier versions, a row per message ever
/// sent, with one record of ranges per sender.
fn migrate_sent(conn: &Connection) -> Result<(), StoreError> {
    let old = has_table(conn, "sent")?;
    if !old {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    let mut senders: std::collections::BTreeMap<u64, Accepted> = Default::default();
    {
        let mut rows = tx.prepare("SELECT sender, number FROM sent ORDER BY sender, number")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let (sender, number): (i64, i64) = (row.get(0)?, row.get(1)?);
            senders
                .entry(sender as u64)
                .or_default()
                .insert(number as u64);
        }
    }
    for (sender, numbers) in &senders {
        tx.execute(
            "INSERT OR REPLACE INTO senders (sender, numbers) VALUES (?1, ?2)",
            params![*sender as i64, numbers.to_bytes()],
        )?;
    }
    tx.execute_batch("DROP TABLE sent")?;
    tx.commit()?;
    tracing::info!(
        senders = senders.len(),
        "moved sent message numbers to ranges per sender"
    );
    Ok(())
}

/// Replaces the `broadcasts` table of earlier versions, which kept every
/// body and was never read, with the `broadcast` counter, so numbers go on
/// from where they were.
fn migrate_broadcasts(conn: &Connection) -> Result<(), StoreError> {
    if !has_table(conn, "broadcasts")? {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         UPDATE counters SET value = MAX(value,
             (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'broadcasts'),
             (SELECT COALESCE(MAX(id), 0) FROM broadcasts))
             WHERE name = 'broadcast';
         DROP TABLE broadcasts;
         DELETE FROM sqlite_sequence WHERE name = 'broadcasts';
         COMMIT;",
    )?;
    tracing::info!("broadcast bodies dropped; broadcasts are numbered by a counter");
    Ok(())
}
