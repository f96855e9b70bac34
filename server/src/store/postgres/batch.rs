//! One batch of requests in one transaction, in two pipelined round trips
//! (plus one per rare request: sign-ins, files, pruning):
//!
//! 1. `BEGIN`; make sure every sender of the batch has a row, and lock
//!    those rows in sender order; the same for the recipients' mailbox
//!    rows (only real users get one); delete the acknowledged messages;
//!    take as many delivery and broadcast numbers as the batch could use.
//! 2. Insert the new messages (one statement over `unnest` arrays), write
//!    back the senders' accepted numbers and the mailbox counts, `COMMIT`.
//!
//! Between the two the decisions (duplicate? mailbox full?) are made here,
//! on rows this transaction holds locked: a second process writing for the
//! same sender or recipient waits for the commit, then reads the new rows.
//! Locks are always taken senders first, then mailboxes, each in number
//! order, so two writers cannot deadlock on them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::super::accepted::Accepted;
use super::super::command::answer;
use super::super::{unix_now, Command, FileRefused, Pruned, StoreError, StoreLimits, Stored};
use super::{as_i64, db, Link};

/// Rows removed by one round of pruning at most, as in the SQLite engine.
const PRUNE_LIMIT: i64 = 10_000;

/// The writer's statements, prepared once per connection.
pub(super) struct Statements {
    begin: Statement,
    commit: Statement,
    ensure_senders: Statement,
    lock_senders: Statement,
    ensure_mailboxes: Statement,
    lock_mailboxes: Statement,
    ack: Statement,
    next_delivery: Statement,
    next_broadcast: Statement,
    insert_queued: Statement,
    save_senders: Statement,
    mailbox_deltas: Statement,
    user_insert: Statement,
    user_select: Statement,
    is_protected: Statement,
    claim: Statement,
    set_password: Statement,
    new_session: Statement,
    lock_user: Statement,
    count_files: Statement,
    insert_file: Statement,
    complete_file: Statement,
    discard_file: Statement,
    prune_sessions: Statement,
    lock_expired: Statement,
    prune_mail: Statement,
    reserve_storage: Statement,
    lock_storage: Statement,
    prune_orphans: Statement,
    insert_broadcasts: Statement,
    trim_broadcasts: Statement,
    prune_uploads: Statement,
}

impl Statements {
    /// Prepares them all, pipelined.
    pub(super) async fn prepare(c: &Client) -> Result<Self, StoreError> {
        const SQL: [&str; 32] = [
            "BEGIN",
            "COMMIT",
            "INSERT INTO senders (sender, numbers)
             SELECT s, ''::bytea FROM unnest($1::int8[]) AS s ORDER BY s
             ON CONFLICT DO NOTHING",
            "SELECT sender, numbers FROM senders WHERE sender = ANY($1::int8[])
             ORDER BY sender FOR UPDATE",
            "INSERT INTO mailboxes (recipient, messages, bytes)
             SELECT id, 0, 0 FROM users WHERE id = ANY($1::int8[]) ORDER BY id
             ON CONFLICT DO NOTHING",
            "SELECT recipient, messages, bytes FROM mailboxes WHERE recipient = ANY($1::int8[])
             ORDER BY recipient FOR UPDATE",
            "DELETE FROM queued q USING unnest($1::int8[], $2::int8[]) AS a(r, i)
             WHERE q.recipient = a.r AND q.id = a.i
             RETURNING q.recipient, octet_length(q.body)::int8",
            "SELECT nextval('delivery_numbers') FROM generate_series(1, $1::int8)",
            "SELECT nextval('broadcast_numbers') FROM generate_series(1, $1::int8)",
            "INSERT INTO queued (recipient, id, sender, body, created_at)
             SELECT r, i, s, b, $5::int8
             FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[]) AS t(r, i, s, b)",
            "UPDATE senders SET numbers = t.n
             FROM unnest($1::int8[], $2::bytea[]) AS t(s, n) WHERE senders.sender = t.s",
            "UPDATE mailboxes SET messages = messages + t.m, bytes = bytes + t.b
             FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS t(r, m, b)
             WHERE mailboxes.recipient = t.r",
            "INSERT INTO users (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            "SELECT id FROM users WHERE name = $1",
            "SELECT 1 FROM accounts WHERE user_id = $1",
            "INSERT INTO accounts (user_id, hash, created_at, changed_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (user_id) DO NOTHING",
            "INSERT INTO accounts (user_id, hash, created_at, changed_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (user_id) DO UPDATE
             SET hash = excluded.hash, changed_at = excluded.changed_at",
            "INSERT INTO sessions (id, user_id, created_at, started) VALUES ($1, $2, $3, now())
             ON CONFLICT DO NOTHING",
            // Serialises file creation per uploader, so the count below is
            // exact with several writers.
            "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
            "SELECT count(*) FROM files WHERE uploader = $1",
            "INSERT INTO files (name, size, uploader, complete, created_at, node)
             VALUES ($1, $2, $3, FALSE, $4, $5) RETURNING id",
            "UPDATE files SET complete = TRUE WHERE id = $1",
            "WITH d AS (DELETE FROM files WHERE id = $1 AND NOT complete
                        RETURNING GREATEST(size, $2) AS charge)
             UPDATE storage SET used = used - COALESCE((SELECT sum(charge) FROM d), 0)::int8
             WHERE id = 1",
            "DELETE FROM sessions WHERE id IN
                 (SELECT id FROM sessions WHERE created_at < $1 LIMIT $2)",
            // Pruning (alone in its transaction) locks the mailboxes it
            // will change first, in order, as a batch of messages does.
            "SELECT recipient FROM mailboxes WHERE recipient IN
                 (SELECT DISTINCT recipient FROM queued WHERE created_at < $1)
             ORDER BY recipient FOR UPDATE",
            // Only from the mailboxes locked above ($3).
            "WITH d AS (
                 DELETE FROM queued WHERE (recipient, id) IN
                     (SELECT recipient, id FROM queued
                      WHERE created_at < $1 AND recipient = ANY($3::int8[]) LIMIT $2)
                 RETURNING recipient, octet_length(body)::int8 AS len),
             s AS (SELECT recipient, count(*) AS n, sum(len)::int8 AS b FROM d GROUP BY recipient),
             u AS (UPDATE mailboxes m SET messages = m.messages - s.n, bytes = m.bytes - s.b
                   FROM s WHERE m.recipient = s.recipient)
             SELECT COALESCE(sum(n), 0)::int8 FROM s",
            // The storage quota, for every node together: the row is
            // locked until the batch commits.
            "UPDATE storage SET used = used + $1 WHERE id = 1 AND used + $1 <= $2 RETURNING used",
            // Taken in the first round trip by a batch that touches files,
            // after the senders' and mailboxes' rows and before any user's
            // or file's, so batches of several nodes lock in one order.
            "SELECT used FROM storage WHERE id = 1 FOR UPDATE",
            // This node's unfinished uploads created before $2 that no
            // reservation holds ($3).
            "WITH d AS (
                 DELETE FROM files WHERE id IN
                     (SELECT id FROM files
                      WHERE NOT complete AND node = $1 AND created_at < $2
                        AND id <> ALL($3::int8[])
                      ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)
                 RETURNING id, GREATEST(size, $4) AS charge),
             u AS (UPDATE storage SET used = used - COALESCE((SELECT sum(charge) FROM d), 0)::int8
                   WHERE id = 1)
             SELECT id FROM d",
            "INSERT INTO broadcasts (number, sender, body)
             SELECT n, s, b FROM unnest($1::int8[], $2::int8[], $3::bytea[]) AS t(n, s, b)",
            // All but the newest $1 (by number) go; rows another node is
            // deleting at the same moment are left to it.
            "DELETE FROM broadcasts WHERE number IN
                 (SELECT number FROM broadcasts WHERE number <=
                      (SELECT number FROM broadcasts ORDER BY number DESC OFFSET $1 LIMIT 1)
                  FOR UPDATE SKIP LOCKED)",
            // Unfinished uploads of nodes whose lease has ended. A row
            // without a node (written before schema v4) is left alone.
            "WITH d AS (
                 DELETE FROM files WHERE id IN
                     (SELECT f.id FROM files f
                      WHERE NOT f.complete AND f.node IS NOT NULL AND NOT EXISTS
                          (SELECT 1 FROM nodes n WHERE n.id = f.node AND n.lease_until > now())
                      ORDER BY f.id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, GREATEST(size, $1) AS charge),
             u AS (UPDATE storage SET used = used - COALESCE((SELECT sum(charge) FROM d), 0)::int8
                   WHERE id = 1)
             SELECT id FROM d",
        ];
        let prepared = try_join_all(SQL.iter().map(|sql| c.prepare(sql)))
            .await
            .map_err(db)?;
        let mut it = prepared.into_iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| StoreError::Database("a statement was not prepared".into()))
        };
        Ok(Self {
            begin: next()?,
            commit: next()?,
            ensure_senders: next()?,
            lock_senders: next()?,
            ensure_mailboxes: next()?,
            lock_mailboxes: next()?,
            ack: next()?,
            next_delivery: next()?,
            next_broadcast: next()?,
            insert_queued: next()?,
            save_senders: next()?,
            mailbox_deltas: next()?,
            user_insert: next()?,
            user_select: next()?,
            is_protected: next()?,
            claim: next()?,
            set_password: next()?,
            new_session: next()?,
            lock_user: next()?,
            count_files: next()?,
            insert_file: next()?,
            complete_file: next()?,
            discard_file: next()?,
            prune_sessions: next()?,
            lock_expired: next()?,
            prune_mail: next()?,
            reserve_storage: next()?,
            lock_storage: next()?,
            prune_orphans: next()?,
            insert_broadcasts: next()?,
            trim_broadcasts: next()?,
            prune_uploads: next()?,
        })
    }
}

/// What one request came to, before the commit.
pub(super) enum Outcome {
    Id(u64),
    MaybeId(Option<u64>),
    Done,
    Stored(Stored),
    File(Result<u64, FileRefused>),
    Pruned(Pruned),
    /// This request alone failed (a damaged record); the batch goes on.
    Failed(StoreError),
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;
type Query<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>>;

/// A statement with its parameters, as a future that sends it when first
/// polled: polled in order by `try_join_all`, a list of these goes out as
/// one pipeline.
fn run<'a>(c: &'a Client, st: &'a Statement, params: Vec<Param<'a>>) -> Query<'a> {
    Box::pin(async move {
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        c.query(st, &refs).await
    })
}

/// A statement left out of the pipeline (nothing for it to do).
fn skip<'a>() -> Query<'a> {
    Box::pin(async { Ok(Vec::new()) })
}

/// Runs `batch` in one transaction; the outcome of each request, in order,
/// and the highest delivery number it stored. Any database error fails it
/// all (the caller rolls back and answers every request with the error).
pub(super) async fn execute(
    link: &mut Link,
    batch: &[Command],
    limits: &StoreLimits,
) -> Result<(Vec<Outcome>, Option<u64>), StoreError> {
    let Link {
        client: c,
        st,
        since_trim,
    } = link;
    let (c, st) = (&*c, &*st);
    let now = unix_now();
    let mut senders = Vec::new();
    let mut recipients = Vec::new();
    let (mut ack_r, mut ack_i) = (Vec::new(), Vec::new());
    let (mut directs, mut broadcasts) = (0i64, 0i64);
    let mut files = false;
    for command in batch {
        match command {
            Command::CreateFile { .. } | Command::DiscardFile(..) => files = true,
            Command::StoreDirect { from, to, .. } => {
                senders.push(as_i64(*from));
                recipients.push(as_i64(*to));
                directs += 1;
            }
            Command::StoreBroadcast { from, .. } => {
                senders.push(as_i64(*from));
                broadcasts += 1;
            }
            Command::Ack(recipient, delivery, _) => {
                recipients.push(as_i64(*recipient));
                ack_r.push(as_i64(*recipient));
                ack_i.push(as_i64(*delivery));
            }
            _ => {}
        }
    }
    senders.sort_unstable();
    senders.dedup();
    recipients.sort_unstable();
    recipients.dedup();

    // Round trip 1.
    let has_senders = !senders.is_empty();
    let has_recipients = !recipients.is_empty();
    let first = vec![
        run(c, &st.begin, vec![]),
        if has_senders {
            run(c, &st.ensure_senders, vec![Box::new(senders.clone())])
        } else {
            skip()
        },
        if has_senders {
            run(c, &st.lock_senders, vec![Box::new(senders)])
        } else {
            skip()
        },
        if has_recipients {
            run(c, &st.ensure_mailboxes, vec![Box::new(recipients.clone())])
        } else {
            skip()
        },
        if has_recipients {
            run(c, &st.lock_mailboxes, vec![Box::new(recipients)])
        } else {
            skip()
        },
        if ack_r.is_empty() {
            skip()
        } else {
            run(c, &st.ack, vec![Box::new(ack_r), Box::new(ack_i)])
        },
        if directs > 0 {
            run(c, &st.next_delivery, vec![Box::new(directs)])
        } else {
            skip()
        },
        if broadcasts > 0 {
            run(c, &st.next_broadcast, vec![Box::new(broadcasts)])
        } else {
            skip()
        },
        if files {
            run(c, &st.lock_storage, vec![])
        } else {
            skip()
        },
    ];
    let rows = try_join_all(first).await.map_err(db)?;
    let mut accepted: HashMap<i64, Option<Accepted>> = HashMap::new();
    for row in &rows[2] {
        let bytes: &[u8] = row.try_get(1).map_err(db)?;
        accepted.insert(row.try_get(0).map_err(db)?, Accepted::from_bytes(bytes));
    }
    let mut mailboxes: HashMap<i64, (i64, i64)> = HashMap::new();
    for row in &rows[4] {
        mailboxes.insert(
            row.try_get(0).map_err(db)?,
            (row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?),
        );
    }
    let mut deltas: HashMap<i64, (i64, i64)> = HashMap::new();
    for row in &rows[5] {
        let (r, len): (i64, i64) = (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
        for map in [&mut mailboxes, &mut deltas] {
            let e = map.entry(r).or_default();
            e.0 -= 1;
            e.1 -= len;
        }
    }
    let numbers = |rows: &[Row]| -> Result<std::vec::IntoIter<i64>, StoreError> {
        let mut n = rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(db))
            .collect::<Result<Vec<_>, _>>()?;
        n.sort_unstable();
        Ok(n.into_iter())
    };
    let mut delivery_numbers = numbers(&rows[6])?;
    let mut broadcast_numbers = numbers(&rows[7])?;

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut changed: HashSet<i64> = HashSet::new();
    let (mut q_r, mut q_i, mut q_s, mut q_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut b_n, mut b_s, mut b_b) = (Vec::new(), Vec::new(), Vec::new());
    let mut highest = None;
    for command in batch {
        let outcome = match command {
            Command::StoreDirect {
                from,
                number,
                to,
                body,
                ..
            } => {
                let to_key = as_i64(*to);
                let Some(mailbox) = mailboxes.get_mut(&to_key) else {
                    outcomes.push(Outcome::Stored(Stored::UnknownRecipient));
                    continue;
                };
                let from_key = as_i64(*from);
                let Some(Some(numbers)) = accepted.get_mut(&from_key) else {
                    outcomes.push(Outcome::Failed(StoreError::Damaged(
                        "a sender's record of accepted message numbers",
                    )));
                    continue;
                };
                let len = body.len() as i64;
                if numbers.contains(*number) {
                    Outcome::Stored(Stored::Duplicate)
                } else if mailbox.0.max(0) as u64 >= limits.mailbox_messages
                    || (mailbox.1.max(0) + len) as u64 > limits.mailbox_bytes
                {
                    Outcome::Stored(Stored::MailboxFull)
                } else {
                    let Some(id) = delivery_numbers.next() else {
                        return Err(StoreError::Exhausted);
                    };
                    numbers.insert(*number);
                    changed.insert(from_key);
                    mailbox.0 += 1;
                    mailbox.1 += len;
                    let d = deltas.entry(to_key).or_default();
                    d.0 += 1;
                    d.1 += len;
                    q_r.push(to_key);
                    q_i.push(id);
                    q_s.push(from_key);
                    q_b.push(body.as_ref());
                    highest = Some(id as u64);
                    Outcome::Stored(Stored::New(id as u64))
                }
            }
            Command::StoreBroadcast {
                from, number, body, ..
            } => {
                let from_key = as_i64(*from);
                match accepted.get_mut(&from_key) {
                    Some(Some(numbers)) => {
                        if numbers.contains(*number) {
                            Outcome::Stored(Stored::Duplicate)
                        } else {
                            let Some(id) = broadcast_numbers.next() else {
                                return Err(StoreError::Exhausted);
                            };
                            numbers.insert(*number);
                            changed.insert(from_key);
                            b_n.push(id);
                            b_s.push(from_key);
                            b_b.push(body.as_ref());
                            Outcome::Stored(Stored::New(id as u64))
                        }
                    }
                    _ => Outcome::Failed(StoreError::Damaged(
                        "a sender's record of accepted message numbers",
                    )),
                }
            }
            Command::Ack(..) | Command::Barrier(_) => Outcome::Done,
            other => rare(c, st, other, limits, now).await?,
        };
        outcomes.push(outcome);
    }

    // Round trip 2.
    let (mut s_s, mut s_n) = (Vec::new(), Vec::new());
    let mut changed: Vec<i64> = changed.into_iter().collect();
    changed.sort_unstable();
    for s in changed {
        if let Some(Some(numbers)) = accepted.get(&s) {
            s_s.push(s);
            s_n.push(numbers.to_bytes());
        }
    }
    let mut deltas: Vec<(i64, (i64, i64))> = deltas.into_iter().collect();
    deltas.sort_unstable();
    let (d_r, d_m, d_b): (Vec<i64>, Vec<i64>, Vec<i64>) = (
        deltas.iter().map(|d| d.0).collect(),
        deltas.iter().map(|d| d.1 .0).collect(),
        deltas.iter().map(|d| d.1 .1).collect(),
    );
    *since_trim += b_n.len();
    let second = vec![
        if q_r.is_empty() {
            skip()
        } else {
            run(
                c,
                &st.insert_queued,
                vec![
                    Box::new(q_r),
                    Box::new(q_i),
                    Box::new(q_s),
                    Box::new(q_b),
                    Box::new(now),
                ],
            )
        },
        if s_s.is_empty() {
            skip()
        } else {
            run(c, &st.save_senders, vec![Box::new(s_s), Box::new(s_n)])
        },
        if d_r.is_empty() {
            skip()
        } else {
            run(
                c,
                &st.mailbox_deltas,
                vec![Box::new(d_r), Box::new(d_m), Box::new(d_b)],
            )
        },
        if b_n.is_empty() {
            skip()
        } else {
            run(
                c,
                &st.insert_broadcasts,
                vec![Box::new(b_n), Box::new(b_s), Box::new(b_b)],
            )
        },
        run(c, &st.commit, vec![]),
    ];
    try_join_all(second).await.map_err(db)?;
    Ok((outcomes, highest))
}

/// Trims the kept broadcasts to the newest `broadcasts_kept` once a quarter
/// of that many were added through this link since the last trim. Run
/// after a batch is answered, in a transaction of its own, so that it
/// never delays or fails a batch (two nodes trimming at once skip each
/// other's rows); a failure waits for the next time.
pub(super) async fn trim_broadcasts(link: &mut Link, limits: &StoreLimits) {
    if link.since_trim == 0 || link.since_trim < (limits.broadcasts_kept / 4).max(1) {
        return;
    }
    link.since_trim = 0;
    let kept = i64::try_from(limits.broadcasts_kept).unwrap_or(i64::MAX);
    if let Err(e) = link
        .client
        .execute(&link.st.trim_broadcasts, &[&kept])
        .await
    {
        tracing::warn!(error = %e, "cannot trim the broadcasts kept; next time");
    }
}

/// A request other than a message or an acknowledgement, each its own
/// round trip inside the batch's transaction.
async fn rare(
    c: &Client,
    st: &Statements,
    command: &Command,
    limits: &StoreLimits,
    now: i64,
) -> Result<Outcome, StoreError> {
    Ok(match command {
        Command::SignIn(name, _) => Outcome::Id(sign_in(c, st, name, now).await?),
        Command::SignInUnprotected(name, _) => {
            let user = sign_in(c, st, name, now).await?;
            let protected = c
                .query_opt(&st.is_protected, &[&as_i64(user)])
                .await
                .map_err(db)?
                .is_some();
            Outcome::MaybeId((!protected).then_some(user))
        }
        Command::Claim { name, hash, .. } => {
            let user = sign_in(c, st, name, now).await?;
            let n = c
                .execute(&st.claim, &[&as_i64(user), hash, &now])
                .await
                .map_err(db)?;
            Outcome::MaybeId((n == 1).then_some(user))
        }
        Command::SetPassword { user, hash, .. } => {
            c.execute(&st.set_password, &[&as_i64(*user), hash, &now])
                .await
                .map_err(db)?;
            Outcome::Done
        }
        Command::NewSession(user, _) => loop {
            // rand's thread generator is a CSPRNG seeded from the OS.
            let session: u64 = rand::random();
            if session == 0 {
                continue;
            }
            let n = c
                .execute(&st.new_session, &[&as_i64(session), &as_i64(*user), &now])
                .await
                .map_err(db)?;
            if n == 1 {
                break Outcome::Id(session);
            }
        },
        Command::CreateFile {
            name,
            size,
            uploader,
            node,
            ..
        } => {
            let uploader = as_i64(*uploader);
            c.execute(&st.lock_user, &[&uploader]).await.map_err(db)?;
            let files: i64 = c
                .query_one(&st.count_files, &[&uploader])
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            let charge = charge(u64::from(*size).max(limits.min_file_charge));
            if files.max(0) as u64 >= limits.user_files {
                Outcome::File(Err(FileRefused::TooManyFiles(files as u64)))
            } else if c
                .query_opt(
                    &st.reserve_storage,
                    &[&charge, &self::charge(limits.storage_quota)],
                )
                .await
                .map_err(db)?
                .is_none()
            {
                Outcome::File(Err(FileRefused::StorageFull))
            } else {
                let node = as_i64(*node);
                let id: i64 = c
                    .query_one(
                        &st.insert_file,
                        &[name, &i64::from(*size), &uploader, &now, &node],
                    )
                    .await
                    .map_err(db)?
                    .try_get(0)
                    .map_err(db)?;
                Outcome::File(Ok(id as u64))
            }
        }
        Command::CompleteFile(file, _) => {
            c.execute(&st.complete_file, &[&as_i64(*file)])
                .await
                .map_err(db)?;
            Outcome::Done
        }
        Command::DiscardFile(file, _) => {
            c.execute(
                &st.discard_file,
                &[&as_i64(*file), &charge(limits.min_file_charge)],
            )
            .await
            .map_err(db)?;
            Outcome::Done
        }
        // Alone in its transaction (see `super::run`): mailboxes, then
        // the storage row, then files, the order every batch locks in.
        Command::Prune {
            sessions_before,
            mail_before,
            orphans,
            ..
        } => {
            let sessions = c
                .execute(&st.prune_sessions, &[sessions_before, &PRUNE_LIMIT])
                .await
                .map_err(db)?;
            let messages = match mail_before {
                None => 0,
                Some(before) => {
                    let locked = c
                        .query(&st.lock_expired, &[before])
                        .await
                        .map_err(db)?
                        .iter()
                        .map(|r| r.try_get::<_, i64>(0).map_err(db))
                        .collect::<Result<Vec<i64>, _>>()?;
                    let n: i64 = c
                        .query_one(&st.prune_mail, &[before, &PRUNE_LIMIT, &locked])
                        .await
                        .map_err(db)?
                        .try_get(0)
                        .map_err(db)?;
                    n.max(0) as u64
                }
            };
            let ids = |rows: Vec<Row>| {
                rows.iter()
                    .map(|r| r.try_get::<_, i64>(0).map(|id| id as u64).map_err(db))
                    .collect::<Result<Vec<_>, _>>()
            };
            let min_charge = charge(limits.min_file_charge);
            // The storage row before any file's, as a batch takes them.
            c.query(&st.lock_storage, &[]).await.map_err(db)?;
            let mut uploads = ids(c
                .query(&st.prune_uploads, &[&min_charge, &PRUNE_LIMIT])
                .await
                .map_err(db)?)?;
            if let Some((node, held, before)) = orphans {
                let held: Vec<i64> = held.iter().map(|f| as_i64(*f)).collect();
                uploads.extend(ids(c
                    .query(
                        &st.prune_orphans,
                        &[&as_i64(*node), before, &held, &min_charge, &PRUNE_LIMIT],
                    )
                    .await
                    .map_err(db)?)?);
            }
            Outcome::Pruned(Pruned {
                sessions,
                messages,
                uploads,
            })
        }
        Command::StoreDirect { .. }
        | Command::StoreBroadcast { .. }
        | Command::Ack(..)
        | Command::Barrier(_) => Outcome::Done,
    })
}

/// Bytes as a BIGINT, saturating (a quota of `u64::MAX` means none).
fn charge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The user number of `name`, created on first use. Two statements, not
/// one: after waiting for another writer's insert of the same name, only a
/// new statement sees that row.
async fn sign_in(c: &Client, st: &Statements, name: &str, now: i64) -> Result<u64, StoreError> {
    if let Some(row) = c
        .query_opt(&st.user_insert, &[&name, &now])
        .await
        .map_err(db)?
    {
        return Ok(row.try_get::<_, i64>(0).map_err(db)? as u64);
    }
    let row = c.query_one(&st.user_select, &[&name]).await.map_err(db)?;
    Ok(row.try_get::<_, i64>(0).map_err(db)? as u64)
}

/// Sends each request its outcome, after the commit.
pub(super) fn reply(batch: Vec<Command>, outcomes: Vec<Outcome>) {
    for (command, outcome) in batch.into_iter().zip(outcomes) {
        let mismatch = match (command, outcome) {
            (command, Outcome::Failed(e)) => {
                answer_with(command, e);
                None
            }
            (Command::SignIn(_, r) | Command::NewSession(_, r), Outcome::Id(u)) => {
                drop(r.send(Ok(u)));
                None
            }
            (
                Command::SignInUnprotected(_, r) | Command::Claim { reply: r, .. },
                Outcome::MaybeId(u),
            ) => {
                drop(r.send(Ok(u)));
                None
            }
            (Command::SetPassword { reply, .. }, Outcome::Done) => {
                drop(reply.send(Ok(())));
                None
            }
            (
                Command::Ack(_, _, r)
                | Command::CompleteFile(_, r)
                | Command::DiscardFile(_, r)
                | Command::Barrier(r),
                Outcome::Done,
            ) => {
                drop(r.send(Ok(())));
                None
            }
            (
                Command::StoreDirect { reply, .. } | Command::StoreBroadcast { reply, .. },
                Outcome::Stored(s),
            ) => {
                drop(reply.send(Ok(s)));
                None
            }
            (Command::CreateFile { reply, .. }, Outcome::File(f)) => {
                drop(reply.send(Ok(f)));
                None
            }
            (Command::Prune { reply, .. }, Outcome::Pruned(p)) => {
                drop(reply.send(Ok(p)));
                None
            }
            (command, _) => Some(command),
        };
        if let Some(command) = mismatch {
            // Not reachable: each request's outcome is made for its kind.
            let err = StoreError::Database("an answer of the wrong kind".into());
            answer(command, Err(&err));
        }
    }
}

/// Answers one request with its own failure.
fn answer_with(command: Command, e: StoreError) {
    match command {
        Command::StoreDirect { reply, .. } | Command::StoreBroadcast { reply, .. } => {
            drop(reply.send(Err(e)))
        }
        other => answer(other, Err(&e)),
    }
}
