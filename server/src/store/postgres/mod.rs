//! The PostgreSQL side of [`super::Store`], for several processes sharing
//! one database: one writer task per process commits each batch of queued
//! requests in one pipelined transaction ([`batch`]), and a small pool of
//! connections serves reads ([`reads`]).
//!
//! Nothing that decides an answer is kept in the process between batches:
//! delivery and broadcast numbers come from sequences, a sender's accepted
//! numbers and a recipient's mailbox counts are read (and locked) by the
//! batch that uses them. Two processes writing at once therefore keep
//! deduplication, the caps and unique numbers.

mod batch;
pub(super) mod lease;
pub(super) mod owners;
pub(super) mod reads;
mod schema;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

use super::command::answer;
use super::{Command, Recovered, StoreError, StoreLimits};
use crate::observe::names;

/// Requests committed together at most; bounds the latency of the first.
const MAX_BATCH: usize = 1024;
/// Reading connections at most.
const READERS: usize = 4;
/// How long connecting may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one batch may take before its connection is given up: a
/// database that stops answering must not hold the writer for ever.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between attempts to reach a database that is down, growing to
/// the second; meanwhile requests fail at once.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// A PostgreSQL error, behind the engine-neutral variant.
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// A connection from the reading pool; failing to get one is a database
/// error.
pub(super) async fn pooled(
    pool: &deadpool_postgres::Pool,
) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))
}

/// Runs `sql` on a pooled connection, prepared once per connection.
pub(super) async fn cached(
    pool: &deadpool_postgres::Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let c = pooled(pool).await?;
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query(&st, params).await.map_err(db)
}

/// A count or limit as a BIGINT, saturating.
pub(super) fn as_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A number as PostgreSQL's BIGINT keeps it: its bits, as SQLite does
/// (session numbers use all 64).
pub(super) fn as_i64(n: u64) -> i64 {
    n as i64
}

/// How to reach the database, and how commits are made durable.
#[derive(Debug, Clone)]
pub(super) struct Target {
    config: tokio_postgres::Config,
    full_sync: bool,
}

impl Target {
    /// Parses a URL or key=value connection string.
    pub(super) fn parse(url: &str, full_sync: bool) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(db)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A database whose machine vanished is noticed, not waited on.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("chat-server");
        }
        Ok(Self { config, full_sync })
    }

    /// A new connection, its task spawned, with the session's durability.
    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(db)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        // `full`: a commit returns once it is on disk. `normal`: once it
        // is in PostgreSQL's log buffer, which survives this process but
        // not a crash of the database's machine.
        let sync = if self.full_sync { "on" } else { "off" };
        client
            .batch_execute(&format!("SET synchronous_commit = {sync}"))
            .await
            .map_err(db)?;
        Ok(client)
    }
}

/// Connects, creates or checks the schema, and reads what the server
/// needs at start. Complete files are charged at least `min_file_charge`
/// bytes each.
///
/// Unlike the SQLite engine, nothing is cleaned up here: an upload
/// without its complete flag may be another live process's. Pruning
/// removes those of nodes whose lease has ended ([`super::Store::prune`]).
pub(super) async fn open(
    target: &Target,
    min_file_charge: u64,
) -> Result<(Link, deadpool_postgres::Pool, Recovered, u64), StoreError> {
    let mut client = target.connect().await?;
    schema::migrate(&mut client).await?;
    let charge = i64::try_from(min_file_charge).unwrap_or(i64::MAX);
    // The cluster's storage quota row, counted once from the files when
    // the first node of version 4 starts. An unfinished upload without a
    // node (written before version 4) is never pruned, so not charged.
    client
        .execute(
            "INSERT INTO storage (id, used)
             SELECT 1, COALESCE(SUM(GREATEST(size, $1)), 0)::BIGINT FROM files
             WHERE complete OR node IS NOT NULL
             ON CONFLICT (id) DO NOTHING",
            &[&charge],
        )
        .await
        .map_err(db)?;
    let bytes_stored: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(GREATEST(size, $1)), 0)::BIGINT FROM files WHERE complete",
            &[&charge],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let last: i64 = client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM delivery_numbers",
            &[],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let link = Link::new(client).await?;
    let manager = deadpool_postgres::Manager::from_config(
        target.config.clone(),
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(READERS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    Ok((
        link,
        pool,
        Recovered {
            incomplete_files: Vec::new(),
            bytes_stored: bytes_stored.max(0) as u64,
        },
        last.max(0) as u64,
    ))
}

/// The writer's connection with its prepared statements.
pub(super) struct Link {
    client: Client,
    st: batch::Statements,
    /// Broadcasts kept since the table was last trimmed by this writer.
    since_trim: usize,
}

impl Link {
    async fn new(client: Client) -> Result<Self, StoreError> {
        let st = batch::Statements::prepare(&client).await?;
        Ok(Self {
            client,
            st,
            since_trim: 0,
        })
    }
}

/// Serves requests until every [`super::Store`] handle is dropped. A lost
/// connection is made again when the next batch comes; until it is, each
/// batch fails at once with the reason.
pub(super) async fn run(
    target: Target,
    link: Link,
    mut rx: Receiver<Command>,
    limits: StoreLimits,
    committed: Arc<AtomicU64>,
) {
    let mut link = Some(link);
    let mut retry_at = Instant::now();
    let mut retry = FIRST_RETRY;
    let mut down: Option<String> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        // Pruning runs in a transaction of its own: it locks mailboxes and
        // the storage row, which a batch of messages locks too, and only
        // alone can it take them in the same order as every batch.
        let (prunes, rest): (Vec<Command>, Vec<Command>) = batch
            .into_iter()
            .partition(|c| matches!(c, Command::Prune { .. }));
        let groups = std::iter::once(rest)
            .chain(prunes.into_iter().map(|p| vec![p]))
            .filter(|g| !g.is_empty());
        for batch in groups {
            if link.as_ref().is_some_and(|l| l.client.is_closed()) {
                tracing::warn!("the PostgreSQL connection is closed; connecting again");
                link = None;
            }
            if link.is_none() && Instant::now() >= retry_at {
                let attempt = async { Link::new(target.connect().await?).await };
                match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                    Ok(Ok(l)) => {
                        tracing::info!("connected to PostgreSQL again");
                        link = Some(l);
                        retry = FIRST_RETRY;
                        down = None;
                    }
                    Ok(Err(e)) => down = Some(e.to_string()),
                    Err(_) => down = Some("connecting timed out".into()),
                }
                if link.is_none() {
                    retry_at = Instant::now() + retry;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
            let Some(l) = link.as_mut() else {
                let why = down.as_deref().unwrap_or("not connected");
                let err = StoreError::Database(format!("PostgreSQL is unreachable: {why}").into());
                metrics::counter!(names::STORE_FAILED).increment(1);
                tracing::error!(error = %err, requests = batch.len(), "batch refused");
                batch.into_iter().for_each(|c| answer(c, Err(&err)));
                continue;
            };
            let (size, started) = (batch.len(), std::time::Instant::now());
            let result =
                tokio::time::timeout(BATCH_TIMEOUT, batch::execute(l, &batch, &limits)).await;
            metrics::histogram!(names::STORE_BATCH).record(size as f64);
            metrics::histogram!(names::STORE_COMMIT).record(started.elapsed().as_secs_f64());
            if !matches!(result, Ok(Ok(_))) {
                metrics::counter!(names::STORE_FAILED).increment(1);
            }
            match result {
                Ok(Ok((outcomes, highest))) => {
                    if let Some(h) = highest {
                        committed.fetch_max(h, Ordering::AcqRel);
                    }
                    batch::reply(batch, outcomes);
                    let trim = batch::trim_broadcasts(l, &limits);
                    if tokio::time::timeout(BATCH_TIMEOUT, trim).await.is_err() {
                        tracing::warn!("trimming the broadcasts kept timed out; connecting again");
                        link = None;
                    }
                }
                Ok(Err(err)) => {
                    // A connection lost during COMMIT leaves the outcome
                    // unknown: every request fails, and a resend is then
                    // either stored or recognised as a duplicate.
                    tracing::error!(error = %err, requests = batch.len(), "batch not committed");
                    if l.client.is_closed()
                        || tokio::time::timeout(CONNECT_TIMEOUT, l.client.batch_execute("ROLLBACK"))
                            .await
                            .map_or(true, |r| r.is_err())
                    {
                        link = None;
                    }
                    batch.into_iter().for_each(|c| answer(c, Err(&err)));
                }
                Err(_) => {
                    let err = StoreError::Database(
                        format!("PostgreSQL did not answer within {BATCH_TIMEOUT:?}").into(),
                    );
                    tracing::error!(error = %err, "batch abandoned; connecting again");
                    link = None;
                    batch.into_iter().for_each(|c| answer(c, Err(&err)));
                }
            }
        }
    }
    tracing::debug!("store closed");
}
