//! What each request does to the database, inside the batch's transaction.

use bytes::Bytes;
use proto::limits::BROADCAST_BIT;
use rusqlite::{params, OptionalExtension, Transaction};

use super::super::{Command, FileMeta, Queued, StoreError, Stored};
use super::{Reply, State};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

pub(super) fn answer(command: Command, err: Result<(), &StoreError>) {
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

pub(super) fn execute(tx: &Transaction<'_>, state: &mut State, command: Command) -> Reply {
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
        } => deferred(reply, store_direct(tx, state, from, number, to, &body)),
        Command::StoreBroadcast {
            from,
            number,
            body,
            reply,
        } => deferred(reply, store_broadcast(tx, state, from, number, &body)),
        Command::Ack(recipient, number, r) => deferred(
            r,
            tx.prepare_cached("DELETE FROM queued WHERE recipient = ?1 AND id = ?2")
                .and_then(|mut s| s.execute(params![recipient as i64, number as i64]))
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

fn sign_in(tx: &Transaction<'_>, name: &str) -> Result<u64, StoreError> {
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

fn new_session(tx: &Transaction<'_>, user: u64) -> Result<u64, StoreError> {
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

fn user_name(tx: &Transaction<'_>, user: u64) -> Result<Option<String>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT name FROM users WHERE id = ?1")?
        .query_row([user as i64], |r| r.get(0))
        .optional()?)
}

fn store_direct(
    tx: &Transaction<'_>,
    state: &mut State,
    from: u64,
    number: u64,
    to: u64,
    body: &[u8],
) -> Result<Stored, StoreError> {
    if !state.users.contains(&to) {
        let exists = tx
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row([to as i64], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(Stored::UnknownRecipient);
        }
        state.users.insert(to);
    }
    if state.senders.contains(tx, from, number)? {
        return Ok(Stored::Duplicate);
    }
    // Bit 63 marks broadcasts; SQLite integers are signed 64-bit.
    let id = state
        .delivery
        .checked_add(1)
        .filter(|id| *id < BROADCAST_BIT)
        .ok_or(StoreError::Exhausted)?;
    tx.prepare_cached(
        "INSERT INTO queued (recipient, id, sender, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![to as i64, id as i64, from as i64, body, now()])?;
    state.delivery = id;
    state.senders.accept(from, number);
    Ok(Stored::New(id))
}

fn store_broadcast(
    tx: &Transaction<'_>,
    state: &mut State,
    from: u64,
    number: u64,
    body: &[u8],
) -> Result<Stored, StoreError> {
    if state.senders.contains(tx, from, number)? {
        return Ok(Stored::Duplicate);
    }
    tx.prepare_cached("INSERT INTO broadcasts (sender, body, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![from as i64, body, now()])?;
    state.senders.accept(from, number);
    Ok(Stored::New(tx.last_insert_rowid() as u64))
}

fn queued_for(tx: &Transaction<'_>, user: u64) -> Result<Vec<Queued>, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT id, sender, body FROM queued WHERE recipient = ?1 ORDER BY id")?;
    let rows = stmt.query_map([user as i64], |r| {
        Ok(Queued {
            delivery: r.get::<_, i64>(0)? as u64,
            from: r.get::<_, i64>(1)? as u64,
            body: Bytes::from(r.get::<_, Vec<u8>>(2)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn files(tx: &Transaction<'_>) -> Result<Vec<u64>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT id FROM files WHERE complete = 1 ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| id as u64)
        .collect())
}
