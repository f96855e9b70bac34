//! What each write request does to the database, inside the batch's
//! transaction.

use proto::limits::BROADCAST_BIT;
use rusqlite::{params, OptionalExtension, Transaction};

use super::super::command::{deferred, Reply};
use super::super::{unix_now as now, Command, FileRefused, Pruned, StoreError, Stored};
use super::State;

/// Rows removed by one round of pruning at most, so a round never holds
/// the writer for long; the next round takes the rest.
const PRUNE_LIMIT: i64 = 10_000;

pub(super) fn execute(
    tx: &Transaction<'_>,
    state: &mut State,
    command: Command,
) -> Result<Reply, (Reply, StoreError)> {
    match command {
        Command::SignIn(name, r) => deferred(r, sign_in(tx, &name)),
        Command::SignInUnprotected(name, r) => deferred(r, sign_in_unprotected(tx, &name)),
        Command::Claim { name, hash, reply } => deferred(reply, claim(tx, &name, &hash)),
        Command::SetPassword { user, hash, reply } => deferred(
            reply,
            tx.prepare_cached(
                "INSERT INTO accounts (user, hash, created_at, changed_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (user) DO UPDATE SET hash = excluded.hash, changed_at = excluded.changed_at",
            )
            .and_then(|mut st| st.execute(params![user as i64, hash, now()]))
            .map(drop)
            .map_err(StoreError::from),
        ),
        Command::NewSession(user, r) => deferred(r, new_session(tx, user)),
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
            reply,
            ..
        } => deferred(reply, store_broadcast(tx, state, from, number)),
        Command::Ack(recipient, number, r) => deferred(r, ack(tx, state, recipient, number)),
        Command::CreateFile {
            name,
            size,
            uploader,
            reply,
            ..
        } => deferred(reply, create_file(tx, state, &name, size, uploader)),
        Command::Barrier(r) => deferred(r, Ok(())),
        Command::CompleteFile(file, r) => deferred(
            r,
            tx.execute("UPDATE files SET complete = 1 WHERE id = ?1", [file as i64])
                .map(drop)
                .map_err(StoreError::from),
        ),
        Command::DiscardFile(file, r) => deferred(
            r,
            tx.execute(
                "DELETE FROM files WHERE id = ?1 AND complete = 0",
                [file as i64],
            )
            .map(drop)
            .map_err(StoreError::from),
        ),
        Command::Prune {
            sessions_before,
            mail_before,
            reply,
            ..
        } => deferred(reply, prune(tx, state, sessions_before, mail_before)),
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

fn sign_in_unprotected(tx: &Transaction<'_>, name: &str) -> Result<Option<u64>, StoreError> {
    let user = sign_in(tx, name)?;
    let protected = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE user = ?1")?
        .query_row([user as i64], |_| Ok(()))
        .optional()?
        .is_some();
    Ok((!protected).then_some(user))
}

fn claim(tx: &Transaction<'_>, name: &str, hash: &str) -> Result<Option<u64>, StoreError> {
    let user = sign_in(tx, name)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO accounts (user, hash, created_at, changed_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (user) DO NOTHING",
        )?
        .execute(params![user as i64, hash, now()])?;
    Ok((inserted == 1).then_some(user))
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
    let (count, bytes) = state.mailboxes.get(tx, to)?;
    let len = body.len() as u64;
    if count >= state.limits.mailbox_messages || bytes + len > state.limits.mailbox_bytes {
        return Ok(Stored::MailboxFull);
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
    state.mailboxes.added(to, len);
    Ok(Stored::New(id))
}

fn store_broadcast(
    tx: &Transaction<'_>,
    state: &mut State,
    from: u64,
    number: u64,
) -> Result<Stored, StoreError> {
    if state.senders.contains(tx, from, number)? {
        return Ok(Stored::Duplicate);
    }
    let id = state
        .broadcast
        .checked_add(1)
        .filter(|id| *id < BROADCAST_BIT)
        .ok_or(StoreError::Exhausted)?;
    state.broadcast = id;
    state.senders.accept(from, number);
    Ok(Stored::New(id))
}

fn ack(
    tx: &Transaction<'_>,
    state: &mut State,
    recipient: u64,
    number: u64,
) -> Result<(), StoreError> {
    let removed: Option<i64> = tx
        .prepare_cached(
            "DELETE FROM queued WHERE recipient = ?1 AND id = ?2 RETURNING LENGTH(body)",
        )?
        .query_row(params![recipient as i64, number as i64], |r| r.get(0))
        .optional()?;
    if let Some(len) = removed {
        state.mailboxes.removed(recipient, len as u64);
    }
    Ok(())
}

fn create_file(
    tx: &Transaction<'_>,
    state: &State,
    name: &str,
    size: u32,
    uploader: u64,
) -> Result<Result<u64, FileRefused>, StoreError> {
    let files: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM files WHERE uploader = ?1")?
        .query_row([uploader as i64], |r| r.get(0))?;
    if files as u64 >= state.limits.user_files {
        return Ok(Err(FileRefused::TooManyFiles(files as u64)));
    }
    tx.prepare_cached(
        "INSERT INTO files (name, size, uploader, complete, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
    )?
    .execute(params![name, size, uploader as i64, now()])?;
    Ok(Ok(tx.last_insert_rowid() as u64))
}

fn prune(
    tx: &Transaction<'_>,
    state: &mut State,
    sessions_before: i64,
    mail_before: Option<i64>,
) -> Result<Pruned, StoreError> {
    let sessions = tx
        .prepare_cached(
            "DELETE FROM sessions WHERE id IN
                 (SELECT id FROM sessions WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![sessions_before, PRUNE_LIMIT])? as u64;
    let messages = match mail_before {
        None => 0,
        Some(before) => {
            let n = tx
                .prepare_cached(
                    "DELETE FROM queued WHERE (recipient, id) IN
                         (SELECT recipient, id FROM queued WHERE created_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, PRUNE_LIMIT])? as u64;
            if n > 0 {
                state.mailboxes.clear();
            }
            n
        }
    };
    Ok(Pruned {
        sessions,
        messages,
        uploads: Vec::new(),
    })
}
