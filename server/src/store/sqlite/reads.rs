//! The reads, on their own connection: WAL lets them run beside the
//! writer's transaction instead of queueing behind its sync.

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::super::{Account, FileMeta, Queued, StoreError};

pub(in crate::store) fn user_name(c: &Connection, user: u64) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached("SELECT name FROM users WHERE id = ?1")?
        .query_row([user as i64], |r| r.get(0))
        .optional()?)
}

pub(in crate::store) fn queued_page(
    c: &Connection,
    user: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, sender, body FROM queued WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![user as i64, after.min(i64::MAX as u64) as i64, limit as i64],
        |r| {
            Ok(Queued {
                delivery: r.get::<_, i64>(0)? as u64,
                from: r.get::<_, i64>(1)? as u64,
                body: Bytes::from(r.get::<_, Vec<u8>>(2)?),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(in crate::store) fn file(c: &Connection, file: u64) -> Result<Option<FileMeta>, StoreError> {
    Ok(
        c.prepare_cached("SELECT name, size, complete FROM files WHERE id = ?1")?
            .query_row([file as i64], |row| {
                Ok(FileMeta {
                    name: row.get(0)?,
                    size: row.get::<_, i64>(1)? as u32,
                    complete: row.get::<_, i64>(2)? != 0,
                })
            })
            .optional()?,
    )
}

pub(in crate::store) fn files(c: &Connection) -> Result<Vec<u64>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT id FROM files WHERE complete = 1 ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| id as u64)
        .collect())
}

/// Messages in every mailbox (SQLite counts the rows of an index).
pub(in crate::store) fn queued_total(c: &Connection) -> Result<u64, StoreError> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM queued")?
        .query_row([], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

pub(in crate::store) fn account(c: &Connection, name: &str) -> Result<Option<Account>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT users.id, accounts.hash FROM users JOIN accounts ON accounts.user = users.id
         WHERE users.name = ?1",
    )?
    .query_row([name], |r| {
        Ok(Account {
            user: r.get::<_, i64>(0)? as u64,
            hash: r.get(1)?,
        })
    })
    .optional()?)
}

pub(in crate::store) fn account_of(
    c: &Connection,
    user: u64,
) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT hash FROM accounts WHERE user = ?1")?
            .query_row([user as i64], |r| r.get(0))
            .optional()?,
    )
}
