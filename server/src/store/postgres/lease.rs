//! This process's row in the `nodes` table: its number in the cluster and
//! its lease, renewed by PostgreSQL's clock so that the nodes' own clocks
//! never decide who is alive.
//!
//! The row is written on a connection of its own, so a renewal never waits
//! behind the writer's batches or the readers' pool.

use std::time::Duration;

use tokio_postgres::Client;

use super::super::StoreError;
use super::{db, Target};

/// Rows of nodes whose lease ended this long ago are removed when a node
/// joins; until then an operator can see them (`SELECT * FROM nodes`).
const FORGET_AFTER_SECS: f64 = 86_400.0;

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// Whether this node's lease was extended.
    pub held: bool,
    /// Nodes whose lease has ended (rows are kept for a day).
    pub ended: u64,
}

/// A joined node's handle on its row.
pub(in crate::store) struct Lease {
    target: Target,
    client: Option<Client>,
    id: i64,
    seconds: f64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("seconds", &self.seconds)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Adds a row for this process, named `name`, holding a lease of
    /// `lease`; returns the handle and the node's number.
    pub(in crate::store) async fn join(
        target: Target,
        name: &str,
        lease: Duration,
    ) -> Result<(Self, u64), StoreError> {
        let client = target.connect().await?;
        let seconds = lease.as_secs_f64();
        client
            .execute(
                "DELETE FROM nodes WHERE lease_until < now() - make_interval(secs => $1)",
                &[&FORGET_AFTER_SECS],
            )
            .await
            .map_err(db)?;
        let id: i64 = client
            .query_one(
                "INSERT INTO nodes (name, started_at, lease_until)
                 VALUES ($1, now(), now() + make_interval(secs => $2)) RETURNING id",
                &[&name, &seconds],
            )
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let lease = Self {
            target,
            client: Some(client),
            id,
            seconds,
        };
        Ok((lease, id as u64))
    }

    /// Extends the lease from PostgreSQL's now, and counts the nodes whose
    /// lease has ended by that clock. `held` false: this node's had already
    /// ended (or its row is gone), so it has lost its place and must not
    /// serve. A lost connection is made again.
    pub(in crate::store) async fn renew(&mut self) -> Result<Renewal, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.target.connect().await?);
        }
        let Some(client) = &self.client else {
            return Err(StoreError::Database("not connected".into()));
        };
        let renewed = client
            .query_one(
                "WITH renewed AS (
                     UPDATE nodes SET lease_until = now() + make_interval(secs => $2)
                     WHERE id = $1 AND lease_until > now() RETURNING id)
                 SELECT (SELECT count(*) FROM renewed),
                        (SELECT count(*) FROM nodes WHERE lease_until <= now())",
                &[&self.id, &self.seconds],
            )
            .await
            .and_then(|row| Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?)));
        match renewed {
            Ok((held, ended)) => Ok(Renewal {
                held: held == 1,
                ended: ended.max(0) as u64,
            }),
            Err(e) => {
                self.client = None;
                Err(db(e))
            }
        }
    }
}
