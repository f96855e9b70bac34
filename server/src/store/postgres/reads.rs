//! The reads, through a small pool of connections of their own, so they
//! never wait behind the writer's commit.

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use proto::limits::BROADCAST_BIT;

use super::super::{Account, FileMeta, KeptBroadcast, Queued, StoreError};
use super::{as_i64, as_limit, cached, db};

/// The one row `sql` reads, if any.
async fn one(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    Ok(cached(pool, sql, params).await?.into_iter().next())
}

pub(in crate::store) async fn user_name(
    pool: &Pool,
    user: u64,
) -> Result<Option<String>, StoreError> {
    let row = one(
        pool,
        "SELECT name FROM users WHERE id = $1",
        &[&as_i64(user)],
    )
    .await?;
    row.map(|r| r.try_get(0).map_err(db)).transpose()
}

/// The highest delivery number any process has taken from the sequence
/// (committed or not): a direct message numbered above it is committed
/// after this read.
pub(in crate::store) async fn delivery_horizon(pool: &Pool) -> Result<u64, StoreError> {
    let row = one(pool, "SELECT last_value FROM delivery_numbers", &[]).await?;
    let n: i64 = row
        .ok_or(StoreError::Damaged("the delivery sequence"))?
        .try_get(0)
        .map_err(db)?;
    Ok(n.max(0) as u64)
}

pub(in crate::store) async fn queued_page(
    pool: &Pool,
    user: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    let rows = cached(
        pool,
        "SELECT id, sender, body FROM queued WHERE recipient = $1 AND id > $2
         ORDER BY id LIMIT $3",
        &[&as_i64(user), &as_i64(after), &as_limit(limit)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Queued {
                delivery: r.try_get::<_, i64>(0).map_err(db)? as u64,
                from: r.try_get::<_, i64>(1).map_err(db)? as u64,
                body: Bytes::from(r.try_get::<_, Vec<u8>>(2).map_err(db)?),
            })
        })
        .collect()
}

/// Messages in every mailbox: the sum of the counts the writer keeps per
/// recipient, rather than a count over the queue's rows.
pub(in crate::store) async fn queued_total(pool: &Pool) -> Result<u64, StoreError> {
    let row = one(
        pool,
        "SELECT COALESCE(sum(messages), 0)::BIGINT FROM mailboxes",
        &[],
    )
    .await?;
    let n: i64 = row
        .ok_or(StoreError::Damaged("the mailboxes' counts"))?
        .try_get(0)
        .map_err(db)?;
    Ok(n.max(0) as u64)
}

pub(in crate::store) async fn file(pool: &Pool, file: u64) -> Result<Option<FileMeta>, StoreError> {
    let sql = "SELECT name, size, complete FROM files WHERE id = $1";
    let Some(r) = one(pool, sql, &[&as_i64(file)]).await? else {
        return Ok(None);
    };
    let size: i64 = r.try_get(1).map_err(db)?;
    Ok(Some(FileMeta {
        name: r.try_get(0).map_err(db)?,
        size: u32::try_from(size).map_err(|_| StoreError::Damaged("a file's size"))?,
        complete: r.try_get(2).map_err(db)?,
    }))
}

pub(in crate::store) async fn files(pool: &Pool) -> Result<Vec<u64>, StoreError> {
    let rows = cached(pool, "SELECT id FROM files WHERE complete ORDER BY id", &[]).await?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map(|id| id as u64).map_err(db))
        .collect()
}

pub(in crate::store) async fn account(
    pool: &Pool,
    name: &str,
) -> Result<Option<Account>, StoreError> {
    let sql =
        "SELECT users.id, accounts.hash FROM users JOIN accounts ON accounts.user_id = users.id
               WHERE users.name = $1";
    let Some(r) = one(pool, sql, &[&name]).await? else {
        return Ok(None);
    };
    Ok(Some(Account {
        user: r.try_get::<_, i64>(0).map_err(db)? as u64,
        hash: r.try_get(1).map_err(db)?,
    }))
}

pub(in crate::store) async fn account_of(
    pool: &Pool,
    user: u64,
) -> Result<Option<String>, StoreError> {
    let sql = "SELECT hash FROM accounts WHERE user_id = $1";
    let row = one(pool, sql, &[&as_i64(user)]).await?;
    row.map(|r| r.try_get(0).map_err(db)).transpose()
}

/// Broadcasts kept, as the rows `rows` read (number, sender, body), oldest
/// number first.
fn kept(rows: Vec<Row>) -> Result<Vec<KeptBroadcast>, StoreError> {
    let mut kept = rows
        .iter()
        .map(|r| {
            Ok(KeptBroadcast {
                delivery: r.try_get::<_, i64>(0).map_err(db)? as u64 | BROADCAST_BIT,
                sender: r.try_get::<_, i64>(1).map_err(db)? as u64,
                body: Bytes::copy_from_slice(r.try_get::<_, &[u8]>(2).map_err(db)?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    kept.reverse();
    Ok(kept)
}

/// The newest `limit` broadcasts kept that were committed since `node`
/// joined (both by PostgreSQL's clock), returned oldest first.
pub(in crate::store) async fn broadcasts_since_node(
    pool: &Pool,
    node: u64,
    limit: usize,
) -> Result<Vec<KeptBroadcast>, StoreError> {
    kept(
        cached(
            pool,
            "SELECT b.number, b.sender, b.body FROM broadcasts b
             WHERE b.at >= (SELECT started_at FROM nodes WHERE id = $1)
             ORDER BY b.number DESC LIMIT $2",
            &[&as_i64(node), &as_limit(limit)],
        )
        .await?,
    )
}

/// The newest `limit` broadcasts kept that were committed since `session`
/// was issued (both by PostgreSQL's clock), but `user`'s own, returned
/// oldest first. A broadcast's time is its transaction's start, and a
/// batch may take up to 30 s (`BATCH_TIMEOUT`) to commit, so those up to
/// 30 s older than the session come too: the client drops what it has
/// shown, and a broadcast committed after the session began is never left
/// out. A session issued before schema v4 has only the issuing node's
/// clock.
pub(in crate::store) async fn broadcasts_since_session(
    pool: &Pool,
    session: u64,
    user: u64,
    limit: usize,
) -> Result<Vec<KeptBroadcast>, StoreError> {
    kept(
        cached(
            pool,
            "SELECT b.number, b.sender, b.body FROM broadcasts b
             WHERE b.at >= (SELECT COALESCE(started, to_timestamp(created_at))
                            FROM sessions WHERE id = $1) - interval '30 seconds'
               AND b.sender <> $2
             ORDER BY b.number DESC LIMIT $3",
            &[&as_i64(session), &as_i64(user), &as_limit(limit)],
        )
        .await?,
    )
}
