//! Who holds each name in the cluster: one row per user in `owners`
//! (schema v3), naming the session, the node that has it and whether a
//! connection is on it. A row whose node's lease has ended (by
//! PostgreSQL's clock) counts as free, so the sessions of a dead node are
//! taken over without asking it.
//!
//! Every change is one transaction on a reading connection, not the
//! writer's: a sign-in does not wait behind a batch of messages. The row
//! is locked (`FOR UPDATE`) before it is judged, so two nodes signing the
//! same name in at once take turns, and the second sees the first's row.

use deadpool_postgres::Pool;

use super::super::{Claim, HeldRow, StoreError, Taken};
use super::{as_i64, as_limit, cached, db, pooled};

/// Judges the locked row of `user` and, if it is free, gives it to
/// `session` on `node`, attached. The row after `INSERT ... ON CONFLICT DO
/// NOTHING` always exists, so the `SELECT ... FOR UPDATE` always locks one.
pub(in crate::store) async fn claim(
    pool: &Pool,
    user: u64,
    session: u64,
    node: u64,
) -> Result<Claim, StoreError> {
    let mut c = pooled(pool).await?;
    let tx = c.transaction().await.map_err(db)?;
    let (user, session, node) = (as_i64(user), as_i64(session), as_i64(node));
    tx.execute(
        "INSERT INTO owners (user_id, session, node, attached, epoch, since)
         VALUES ($1, $2, $3, FALSE, 0, now()) ON CONFLICT (user_id) DO NOTHING",
        &[&user, &session, &node],
    )
    .await
    .map_err(db)?;
    let row = tx
        .query_one(
            "SELECT o.session, o.node, o.attached, COALESCE(n.lease_until > now(), FALSE)
             FROM owners o LEFT JOIN nodes n ON n.id = o.node
             WHERE o.user_id = $1 FOR UPDATE OF o",
            &[&user],
        )
        .await
        .map_err(db)?;
    let held_session: i64 = row.try_get(0).map_err(db)?;
    let held_node: i64 = row.try_get(1).map_err(db)?;
    let attached: bool = row.try_get(2).map_err(db)?;
    let alive: bool = row.try_get(3).map_err(db)?;
    // This node's own sessions are judged by its hub, which the caller
    // asked first.
    let elsewhere = held_node != node && alive && held_session != session;
    if elsewhere && attached {
        tx.rollback().await.map_err(db)?;
        return Ok(Claim::InUse);
    }
    let epoch = take(&tx, user, session, node).await?;
    tx.commit().await.map_err(db)?;
    Ok(Claim::Taken(Taken {
        epoch,
        // A live node keeps a session whose client is away: it is told to
        // end it.
        replaced: elsewhere.then_some((held_node as u64, held_session as u64)),
        from: held_node as u64,
    }))
}

async fn take(
    tx: &tokio_postgres::Transaction<'_>,
    user: i64,
    session: i64,
    node: i64,
) -> Result<u64, StoreError> {
    let epoch: i64 = tx
        .query_one(
            "UPDATE owners SET session = $2, node = $3, attached = TRUE,
                 epoch = epoch + 1, since = now()
             WHERE user_id = $1 RETURNING epoch",
            &[&user, &session, &node],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    Ok(epoch as u64)
}

/// Moves `session` to `node` (compare-and-set on the row that names it),
/// attached. `None`: no row names it (it ended, or another sign-in of
/// the name replaced it), or its node died more than `timeout` ago. Otherwise the user, and the live node that held
/// it, if another, to be told.
pub(in crate::store) async fn resume(
    pool: &Pool,
    session: u64,
    node: u64,
    timeout: std::time::Duration,
) -> Result<Option<(u64, Taken)>, StoreError> {
    let mut c = pooled(pool).await?;
    let tx = c.transaction().await.map_err(db)?;
    let (session, node) = (as_i64(session), as_i64(node));
    let row = tx
        .query_opt(
            "SELECT o.user_id, o.node, COALESCE(n.lease_until > now(), FALSE),
                 COALESCE(n.lease_until, '-infinity') < now() - make_interval(secs => $2)
             FROM owners o LEFT JOIN nodes n ON n.id = o.node
             WHERE o.session = $1 FOR UPDATE OF o",
            &[&session, &timeout.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        tx.rollback().await.map_err(db)?;
        return Ok(None);
    };
    let user: i64 = row.try_get(0).map_err(db)?;
    let held_node: i64 = row.try_get(1).map_err(db)?;
    let alive: bool = row.try_get(2).map_err(db)?;
    let long_dead: bool = row.try_get(3).map_err(db)?;
    if !alive && long_dead {
        // Its node died longer ago than a session outlives its client.
        tx.execute("DELETE FROM owners WHERE user_id = $1", &[&user])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        return Ok(None);
    }
    let epoch = take(&tx, user, session, node).await?;
    tx.commit().await.map_err(db)?;
    let replaced = (held_node != node && alive).then_some((held_node as u64, session as u64));
    Ok(Some((
        user as u64,
        Taken {
            epoch,
            replaced,
            from: held_node as u64,
        },
    )))
}

/// Gives `user`'s row back to `session` of `node`, attached, if the row
/// still names `node` (another of its sessions took it; the hub kept this
/// one); the new attachment number, or `None` if another node has it now.
pub(in crate::store) async fn give_back(
    pool: &Pool,
    user: u64,
    session: u64,
    node: u64,
) -> Result<Option<u64>, StoreError> {
    let rows = cached(
        pool,
        "UPDATE owners SET session = $2, attached = TRUE, epoch = epoch + 1, since = now()
         WHERE user_id = $1 AND node = $3 RETURNING epoch",
        &[&as_i64(user), &as_i64(session), &as_i64(node)],
    )
    .await?;
    rows.first()
        .map(|r| r.try_get::<_, i64>(0).map(|e| e as u64).map_err(db))
        .transpose()
}

/// The client of `session` went away; the row stays, free for another
/// sign-in. Only the attachment numbered `epoch` is marked: a later one
/// (the session resumed meanwhile) is left as it is.
pub(in crate::store) async fn detached(
    pool: &Pool,
    user: u64,
    session: u64,
    node: u64,
    epoch: u64,
) -> Result<(), StoreError> {
    cached(
        pool,
        "UPDATE owners SET attached = FALSE, since = now()
         WHERE user_id = $1 AND session = $2 AND node = $3 AND epoch = $4",
        &[
            &as_i64(user),
            &as_i64(session),
            &as_i64(node),
            &as_i64(epoch),
        ],
    )
    .await
    .map(drop)
}

/// `session` ended on `node`: its row goes, unless another node or
/// session has it now.
pub(in crate::store) async fn ended(
    pool: &Pool,
    user: u64,
    session: u64,
    node: u64,
) -> Result<(), StoreError> {
    cached(
        pool,
        "DELETE FROM owners WHERE user_id = $1 AND session = $2 AND node = $3",
        &[&as_i64(user), &as_i64(session), &as_i64(node)],
    )
    .await
    .map(drop)
}

/// Every row `node` holds goes (it shuts down).
pub(in crate::store) async fn node_gone(pool: &Pool, node: u64) -> Result<(), StoreError> {
    cached(pool, "DELETE FROM owners WHERE node = $1", &[&as_i64(node)])
        .await
        .map(drop)
}

/// Users attached on a node whose lease holds, in order, at most `limit`.
pub(in crate::store) async fn online(pool: &Pool, limit: usize) -> Result<Vec<u64>, StoreError> {
    let rows = cached(
        pool,
        "SELECT o.user_id FROM owners o JOIN nodes n ON n.id = o.node
         WHERE o.attached AND n.lease_until > now() ORDER BY o.user_id LIMIT $1",
        &[&as_limit(limit)],
    )
    .await?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map(|u| u as u64).map_err(db))
        .collect()
}

/// The rows naming `node`, each with whether it has not changed for
/// `settle` (a sign-in or move in progress has changed it just now).
pub(in crate::store) async fn held_by(
    pool: &Pool,
    node: u64,
    settle: std::time::Duration,
) -> Result<Vec<HeldRow>, StoreError> {
    let rows = cached(
        pool,
        "SELECT user_id, session, attached, epoch, since < now() - make_interval(secs => $2)
         FROM owners WHERE node = $1",
        &[&as_i64(node), &settle.as_secs_f64()],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HeldRow {
                user: r.try_get::<_, i64>(0).map_err(db)? as u64,
                session: r.try_get::<_, i64>(1).map_err(db)? as u64,
                attached: r.try_get(2).map_err(db)?,
                epoch: r.try_get::<_, i64>(3).map_err(db)? as u64,
                settled: r.try_get(4).map_err(db)?,
            })
        })
        .collect()
}
