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
    /// Whether another node's lease has ended since the last renewal (or,
    /// at the first, since this node joined).
    pub peer_ended: bool,
}

/// The nodes whose lease has ended, as one look at the `nodes` table saw
/// them: the latest end (µs since the epoch, 0 if none), and how many.
/// An ended lease never changes (a renewal needs `lease_until > now()`),
/// so a lease that ends after a look raises the latest end; that alone
/// tells. The count only guards it (the count alone would miss an end
/// when a long-dead row is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ended {
    latest_us: i64,
    count: i64,
}

impl Ended {
    /// A `FROM` item `e` with the two columns.
    const SQL: &'static str =
        "(SELECT COALESCE((extract(epoch FROM max(lease_until)) * 1000000)::int8, 0), count(*)
          FROM nodes WHERE lease_until <= now()) AS e";

    fn read(row: &tokio_postgres::Row, first: usize) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            latest_us: row.try_get(first)?,
            count: row.try_get(first + 1)?,
        })
    }

    /// Whether a lease ended between `self` and `now`.
    fn more_in(self, now: Self) -> bool {
        now.latest_us > self.latest_us || now.count > self.count
    }
}

/// A joined node's handle on its row.
pub(in crate::store) struct Lease {
    target: Target,
    client: Option<Client>,
    id: i64,
    seconds: f64,
    /// The ended leases the last look saw.
    ended: Ended,
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
        let row = client
            .query_one(
                &format!(
                    "WITH joined AS (
                         INSERT INTO nodes (name, started_at, lease_until)
                         VALUES ($1, now(), now() + make_interval(secs => $2)) RETURNING id)
                     SELECT (SELECT id FROM joined), e.* FROM {}",
                    Ended::SQL
                ),
                &[&name, &seconds],
            )
            .await
            .map_err(db)?;
        let (id, ended): (i64, Ended) = (
            row.try_get(0).map_err(db)?,
            Ended::read(&row, 1).map_err(db)?,
        );
        let lease = Self {
            target,
            client: Some(client),
            id,
            seconds,
            ended,
        };
        Ok((lease, id as u64))
    }

    /// Extends the lease from PostgreSQL's now, and tells whether another
    /// node's lease has ended by that clock since the last look. `held`
    /// false: this node's had already ended (or its row is gone), so it
    /// has lost its place and must not serve. A lost connection is made
    /// again.
    pub(in crate::store) async fn renew(&mut self) -> Result<Renewal, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.target.connect().await?);
        }
        let Some(client) = &self.client else {
            return Err(StoreError::Database("not connected".into()));
        };
        let renewed = client
            .query_one(
                &format!(
                    "WITH renewed AS (
                         UPDATE nodes SET lease_until = now() + make_interval(secs => $2)
                         WHERE id = $1 AND lease_until > now() RETURNING id)
                     SELECT (SELECT count(*) FROM renewed), e.* FROM {}",
                    Ended::SQL
                ),
                &[&self.id, &self.seconds],
            )
            .await
            .and_then(|row| Ok((row.try_get::<_, i64>(0)?, Ended::read(&row, 1)?)));
        match renewed {
            Ok((held, ended)) => {
                let peer_ended = self.ended.more_in(ended);
                self.ended = ended;
                Ok(Renewal {
                    held: held == 1,
                    peer_ended,
                })
            }
            Err(e) => {
                self.client = None;
                Err(db(e))
            }
        }
    }
}
