//! Durable state: users, sessions issued, queued messages, broadcasts and
//! file metadata.
//!
//! [`Store`] is the narrow interface the rest of the server uses. Behind it
//! is one of two engines, chosen when the store opens, with the same
//! semantics:
//! - `sqlite`: one embedded database in the data directory (the default).
//! - `postgres`: a PostgreSQL database that several processes may share.
//!
//! The interface has two halves. Writes are [`Command`]s, sent through a
//! bounded queue to the engine's one writer, which commits whatever
//! requests have queued up in one transaction (group commit), so one
//! commit serves many messages; if any statement of a batch fails, the
//! whole batch fails and nothing of it is committed, and every request in
//! it gets the error. Reads go straight to the engine's readers ([`Reads`]),
//! so they never wait behind a commit. The engine is an enum rather than a
//! trait object: there are exactly two, the write half is the same queue
//! for both, and a read costs a `match`, not a boxed future per call.

mod accepted;
pub mod admin;
mod command;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use command::Command;

/// A database failure, from whichever engine.
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed (disk full, I/O error, corruption, connection
    /// lost). Which engine's error it is stays behind this variant.
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),
    /// The transaction holding this request failed to commit.
    #[error("database error: {0}")]
    Batch(String),
    /// A record in the database is not in the form this server wrote.
    #[error("damaged record in the database: {0}")]
    Damaged(&'static str),
    /// Every delivery number has been used (2^63 direct messages).
    #[error("no delivery numbers are left")]
    Exhausted,
    /// The store thread is gone (the server is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A read on the blocking pool could not run.
    #[error("a database read could not run: {0}")]
    Read(String),
}

/// What happened to a message handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now under this delivery number.
    New(u64),
    /// The sender already sent this message number; stored before.
    Duplicate,
    /// The recipient does not exist.
    UnknownRecipient,
    /// The recipient's mailbox holds as many messages or bytes as allowed.
    MailboxFull,
}

/// What a new upload's row could not be made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRefused {
    /// The uploader has this many files (stored or uploading), the limit.
    TooManyFiles(u64),
    /// The storage quota of the cluster is used up (PostgreSQL: the
    /// quota is kept in the database, for every node together).
    StorageFull,
}

/// Limits the store enforces inside its transactions, where they are exact.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Unread direct messages kept for one user.
    pub mailbox_messages: u64,
    /// Bytes of unread direct messages kept for one user.
    pub mailbox_bytes: u64,
    /// Files one user may have, stored or uploading.
    pub user_files: u64,
    /// Requests waiting for the writer at most.
    pub queue: usize,
    /// Broadcast bodies kept for catch-ups (PostgreSQL), the most recent.
    pub broadcasts_kept: usize,
    /// Bytes of files stored or being uploaded, for the whole cluster
    /// (PostgreSQL; alone the server's own quota keeps it).
    pub storage_quota: u64,
    /// Bytes each file is charged at least.
    pub min_file_charge: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            mailbox_messages: 10_000,
            mailbox_bytes: 64 << 20,
            user_files: 10_000,
            queue: 4096,
            broadcasts_kept: 1000,
            storage_quota: u64::MAX,
            min_file_charge: 0,
        }
    }
}

/// What one round of pruning removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Records of session numbers older than the retention.
    pub sessions: u64,
    /// Unread messages older than the mail expiry.
    pub messages: u64,
    /// Unfinished uploads of nodes whose lease has ended (PostgreSQL),
    /// whose rows are gone: their partial bodies are to be removed.
    pub uploads: Vec<u64>,
}

/// A broadcast as kept for catch-ups (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBroadcast {
    /// The delivery number (bit 63 set).
    pub delivery: u64,
    /// The sender's user number.
    pub sender: u64,
    /// The message.
    pub body: Bytes,
}

/// A message waiting for its recipient's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The delivery number (bit 63 clear).
    pub delivery: u64,
    /// The sender.
    pub from: u64,
    /// The body.
    pub body: Bytes,
}

/// A file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Its name, a label only.
    pub name: String,
    /// Its size in bytes.
    pub size: u32,
    /// Whether every chunk is on disk.
    pub complete: bool,
}

/// A name's account: its user and password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The user number.
    pub user: u64,
    /// The Argon2id hash, as a PHC string.
    pub hash: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A name's row in a cluster, taken by this node ([`Store::claim_name`],
/// [`Store::resume_session`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The attachment's number, for [`Store::session_detached`].
    pub epoch: u64,
    /// The live node that held the name (or the session) before, and the
    /// session it held: that node must end it.
    pub replaced: Option<(u64, u64)>,
    /// The node that held the row before (this one, if it was new).
    pub from: u64,
}

/// A row of the cluster's `owners` table naming this node
/// ([`Store::rows_held`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldRow {
    /// The user whose name it is.
    pub user: u64,
    /// The session holding it.
    pub session: u64,
    /// Whether a connection is on it.
    pub attached: bool,
    /// Its attachment number.
    pub epoch: u64,
    /// Whether it has not changed for the settling time asked for.
    pub settled: bool,
}

/// What signing a name in found in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this session's now.
    Taken(Taken),
    /// A session of the name is on a connection of another live node.
    InUse,
}

/// The database's file name in the data directory.
pub(crate) const DATABASE_FILE: &str = "chat.sqlite3";

/// Reading connections (and threads): reads are short, two keep one long
/// read (the file list) from holding up the rest.
const READERS: usize = 2;

/// A request queued to the store, not yet committed.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Pending<T> {
    /// Waits for the commit and the outcome.
    pub async fn wait(self) -> Result<T, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// A handle to the store; cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    /// Where reads go.
    reads: Reads,
    /// The highest delivery number committed.
    committed: Arc<std::sync::atomic::AtomicU64>,
}

pub use postgres::lease::Renewal;

/// This process's place in a cluster on PostgreSQL: its node number, and
/// a lease it renews to go on serving ([`crate::lease`] keeps it).
#[derive(Debug)]
pub struct NodeLease(postgres::lease::Lease);

impl NodeLease {
    /// Joins the cluster of the database at `url` as a new node named
    /// `name`, with a lease of `lease`; returns the handle and the node's
    /// number. Renewals are committed durably (`synchronous_commit = on`),
    /// so a crash of the database cannot shorten a lease this node holds.
    pub async fn join(url: &str, name: &str, lease: Duration) -> Result<(Self, u64), StoreError> {
        let target = postgres::Target::parse(url, true)?;
        let (lease, id) = postgres::lease::Lease::join(target, name, lease).await?;
        Ok((Self(lease), id))
    }

    /// Extends the lease by PostgreSQL's clock (`held` false if it had
    /// already ended there), and tells whether another node's lease has
    /// ended since the last renewal, or since the join.
    pub async fn renew(&mut self) -> Result<Renewal, StoreError> {
        self.0.renew().await
    }
}

/// The read half of an engine.
#[derive(Debug, Clone)]
enum Reads {
    /// Threads with a reading connection each.
    Sqlite(Arc<crate::pool::Pool<Connection>>),
    /// A small pool of PostgreSQL connections.
    Postgres(deadpool_postgres::Pool),
}

/// What the store found when it opened.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Files whose upload never finished; their rows are gone and their
    /// bodies must be removed.
    pub incomplete_files: Vec<u64>,
    /// Bytes charged for complete files: each at least the minimum charge.
    pub bytes_stored: u64,
}

/// Seconds since the Unix epoch, as the database records times.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database in `dir` and starts its
    /// thread. `full_sync` makes every commit reach the disk; complete
    /// files are charged at least `min_file_charge` bytes each.
    pub fn open(
        dir: &Path,
        full_sync: bool,
        min_file_charge: u64,
        limits: StoreLimits,
    ) -> Result<(Self, Recovered, std::thread::JoinHandle<()>), StoreError> {
        let path = dir.join(DATABASE_FILE);
        let (conn, recovered) = sqlite::open(&path, full_sync, min_file_charge)?;
        let readers = (0..READERS)
            .map(|_| sqlite::open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        let readers = crate::pool::Pool::new("chat-store-read", readers)
            .map_err(|e| StoreError::Read(e.to_string()))?;
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("chat-store".into())
            .spawn({
                let committed = committed.clone();
                move || sqlite::run(conn, rx, limits, committed)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok((
            Self {
                tx,
                committed,
                reads: Reads::Sqlite(Arc::new(readers)),
            },
            recovered,
            thread,
        ))
    }

    /// Connects to the PostgreSQL database at `url` (a `postgres://` URL or
    /// a `key=value` string), creates or checks its schema, and starts the
    /// writer task. `full_sync` makes every commit wait for PostgreSQL's
    /// disk (`synchronous_commit = on`); complete files are charged at
    /// least `min_file_charge` bytes each. Unlike [`Store::open`], nothing
    /// is cleaned up: [`Recovered::incomplete_files`] is empty, since an
    /// unfinished upload may be another live process's.
    pub async fn open_postgres(
        url: &str,
        full_sync: bool,
        min_file_charge: u64,
        limits: StoreLimits,
    ) -> Result<(Self, Recovered, tokio::task::JoinHandle<()>), StoreError> {
        let target = postgres::Target::parse(url, full_sync)?;
        let (link, pool, recovered, last) = postgres::open(&target, min_file_charge).await?;
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let committed = Arc::new(std::sync::atomic::AtomicU64::new(last));
        let task = tokio::spawn(postgres::run(target, link, rx, limits, committed.clone()));
        Ok((
            Self {
                tx,
                committed,
                reads: Reads::Postgres(pool),
            },
            recovered,
            task,
        ))
    }

    /// Queues a command, waiting while the queue is full.
    async fn queue<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Pending<T> {
        let (reply, rx) = oneshot::channel();
        // A closed store drops the command and with it `reply`: the
        // caller's wait then reports Closed.
        let _ = self.tx.send(make(reply)).await;
        Pending(rx)
    }

    /// Runs a read on one of SQLite's reading connections, on their threads.
    async fn read_sqlite<T: Send + 'static>(
        readers: &crate::pool::Pool<Connection>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        readers
            .run(move |conn| f(conn))
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?
    }

    /// Whether sessions are shared by a cluster (PostgreSQL): then the
    /// name's row in the database, not the hub alone, says who holds it.
    pub fn is_shared(&self) -> bool {
        matches!(self.reads, Reads::Postgres(_))
    }

    /// Takes `user`'s name for `session` on `node`, unless a session of
    /// it is on a connection of another live node. Alone (SQLite), the
    /// hub decides and this is always taken.
    pub async fn claim_name(
        &self,
        user: u64,
        session: u64,
        node: u64,
    ) -> Result<Claim, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(Claim::Taken(Taken {
                epoch: 0,
                replaced: None,
                from: node,
            })),
            Reads::Postgres(p) => postgres::owners::claim(p, user, session, node).await,
        }
    }

    /// Moves live session `session` to `node`: its user and what was
    /// taken, or `None` if no live session has that number (a session of
    /// a node that died more than `timeout` ago has ended). Alone
    /// (SQLite) always `None`: the hub has every session.
    pub async fn resume_session(
        &self,
        session: u64,
        node: u64,
        timeout: Duration,
    ) -> Result<Option<(u64, Taken)>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(None),
            Reads::Postgres(p) => postgres::owners::resume(p, session, node, timeout).await,
        }
    }

    /// Gives `user`'s row back to `session` of `node` (attached) if the
    /// row still names `node`: its new attachment number, or `None` if
    /// another node has it (alone, SQLite: always `None`).
    pub async fn give_back_name(
        &self,
        user: u64,
        session: u64,
        node: u64,
    ) -> Result<Option<u64>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(None),
            Reads::Postgres(p) => postgres::owners::give_back(p, user, session, node).await,
        }
    }

    /// The client of `session` (attachment `epoch`, on `node`) went away.
    pub async fn session_detached(
        &self,
        user: u64,
        session: u64,
        node: u64,
        epoch: u64,
    ) -> Result<(), StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(()),
            Reads::Postgres(p) => postgres::owners::detached(p, user, session, node, epoch).await,
        }
    }

    /// `session` ended on `node`: the name is free, unless another node
    /// or session has taken it since.
    pub async fn session_ended(
        &self,
        user: u64,
        session: u64,
        node: u64,
    ) -> Result<(), StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(()),
            Reads::Postgres(p) => postgres::owners::ended(p, user, session, node).await,
        }
    }

    /// `node` shuts down: every name it holds is free.
    pub async fn node_gone(&self, node: u64) -> Result<(), StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(()),
            Reads::Postgres(p) => postgres::owners::node_gone(p, node).await,
        }
    }

    /// The rows of the cluster's `owners` table naming `node`, each saying
    /// whether it has been unchanged for `settle`. Alone (SQLite) none.
    pub async fn rows_held(&self, node: u64, settle: Duration) -> Result<Vec<HeldRow>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(Vec::new()),
            Reads::Postgres(p) => postgres::owners::held_by(p, node, settle).await,
        }
    }

    /// The users on a connection on any live node of the cluster, in
    /// order, at most `limit`; `None` alone (SQLite), where the hub knows.
    pub async fn online_users(&self, limit: usize) -> Result<Option<Vec<u64>>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(None),
            Reads::Postgres(p) => postgres::owners::online(p, limit).await.map(Some),
        }
    }

    /// The user number for `name`, created on first use.
    pub async fn sign_in(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.queue(|r| Command::SignIn(name, r)).await.wait().await
    }

    /// The user number for `name` if the name has no password (created on
    /// first use); `None` for a protected name. One transaction, so a name
    /// claimed meanwhile is never signed in without its password.
    pub async fn sign_in_unprotected(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.queue(|r| Command::SignInUnprotected(name, r))
            .await
            .wait()
            .await
    }

    /// The account of `name`, if the name is protected.
    pub async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let name = name.to_owned();
        match &self.reads {
            Reads::Sqlite(r) => {
                Self::read_sqlite(r, move |c| sqlite::reads::account(c, &name)).await
            }
            Reads::Postgres(p) => postgres::reads::account(p, &name).await,
        }
    }

    /// The password hash of `user`, if the user's name is protected.
    pub async fn account_of(&self, user: u64) -> Result<Option<String>, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => {
                Self::read_sqlite(r, move |c| sqlite::reads::account_of(c, user)).await
            }
            Reads::Postgres(p) => postgres::reads::account_of(p, user).await,
        }
    }

    /// Protects `name` (created if new) with `hash`; its user number, or
    /// `None` if the name is protected already.
    pub async fn claim(&self, name: &str, hash: String) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.queue(|reply| Command::Claim { name, hash, reply })
            .await
            .wait()
            .await
    }

    /// Replaces `user`'s password hash.
    pub async fn set_password(&self, user: u64, hash: String) -> Result<(), StoreError> {
        self.queue(|reply| Command::SetPassword { user, hash, reply })
            .await
            .wait()
            .await
    }

    /// A new session number for `user`: random, never 0, never one whose
    /// record is kept.
    pub async fn new_session(&self, user: u64) -> Result<u64, StoreError> {
        self.queue(|r| Command::NewSession(user, r))
            .await
            .wait()
            .await
    }

    /// The name of user `user`, if it exists.
    pub async fn user_name(&self, user: u64) -> Result<Option<String>, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => {
                Self::read_sqlite(r, move |c| sqlite::reads::user_name(c, user)).await
            }
            Reads::Postgres(p) => postgres::reads::user_name(p, user).await,
        }
    }

    /// Stores a direct message durably, once per (sender, number). The
    /// request is queued (waiting only while the queue is full);
    /// [`Pending::wait`] gives the outcome after the commit, so a
    /// connection can queue several before waiting.
    pub async fn store_direct(
        &self,
        from: u64,
        number: u64,
        to: u64,
        body: Bytes,
    ) -> Pending<Stored> {
        self.queue(|reply| Command::StoreDirect {
            from,
            number,
            to,
            body,
            reply,
        })
        .await
    }

    /// Numbers a broadcast once per (sender, number); its delivery number
    /// is the returned id with bit 63 set. SQLite keeps no
    /// bodies (a broadcast lives in the sessions it reaches); PostgreSQL
    /// keeps the most recent for catch-ups ([`Store::recent_broadcasts`]).
    /// Queued like [`Store::store_direct`].
    pub async fn store_broadcast(&self, from: u64, number: u64, body: Bytes) -> Pending<Stored> {
        self.queue(|reply| Command::StoreBroadcast {
            from,
            number,
            body,
            reply,
        })
        .await
    }

    /// The newest `limit` broadcasts kept (PostgreSQL) that were committed
    /// since `node` joined, oldest number first: what a catch-up compares
    /// with what the node has seen. Empty alone.
    pub async fn recent_broadcasts(
        &self,
        node: u64,
        limit: usize,
    ) -> Result<Vec<KeptBroadcast>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(Vec::new()),
            Reads::Postgres(p) => postgres::reads::broadcasts_since_node(p, node, limit).await,
        }
    }

    /// The newest `limit` broadcasts kept (PostgreSQL) that were
    /// committed since `session` began, but `user`'s own, oldest number
    /// first: what the session may have been owed on a node that can no
    /// longer say. Empty alone.
    pub async fn broadcasts_for_session(
        &self,
        session: u64,
        user: u64,
        limit: usize,
    ) -> Result<Vec<KeptBroadcast>, StoreError> {
        match &self.reads {
            Reads::Sqlite(_) => Ok(Vec::new()),
            Reads::Postgres(p) => {
                postgres::reads::broadcasts_since_session(p, session, user, limit).await
            }
        }
    }

    /// The recipient acknowledged direct delivery `delivery`: forget it.
    /// Nobody waits for the commit: if the server dies first the message
    /// is delivered again, which clients recognise by its number. A client
    /// that floods acknowledgements waits here for room in the queue.
    pub async fn forget(&self, recipient: u64, delivery: u64) {
        drop(self.queue(|r| Command::Ack(recipient, delivery, r)).await);
    }

    /// The highest delivery number of a committed direct message: a message
    /// committed later has a higher one.
    pub fn last_delivery(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The delivery number up to which a mailbox read now must go to find
    /// every direct message committed before it; `local` is
    /// [`Store::last_delivery`] taken earlier. With SQLite one process
    /// numbers every message, so that is `local`. With PostgreSQL other
    /// processes number messages too: the delivery sequence's last value
    /// (a number taken later is committed later), or, if it cannot be
    /// read, no bound at all.
    pub async fn delivery_horizon(&self, local: u64) -> u64 {
        match &self.reads {
            Reads::Sqlite(_) => local,
            Reads::Postgres(p) => match postgres::reads::delivery_horizon(p).await {
                Ok(n) => n.max(local),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the delivery sequence");
                    u64::MAX
                }
            },
        }
    }

    /// Waits until every request queued before this one is committed, so
    /// that a read afterwards sees them (reads use their own connection).
    pub async fn barrier(&self) -> Result<(), StoreError> {
        self.queue(Command::Barrier).await.wait().await
    }

    /// Up to `limit` messages queued for `user` with delivery numbers
    /// above `after`, oldest first.
    pub async fn queued_page(
        &self,
        user: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => {
                Self::read_sqlite(r, move |c| {
                    sqlite::reads::queued_page(c, user, after, limit)
                })
                .await
            }
            Reads::Postgres(p) => postgres::reads::queued_page(p, user, after, limit).await,
        }
    }

    /// Registers an upload and returns the file number it will have, or
    /// why the uploader may not start one.
    pub async fn create_file(
        &self,
        name: &str,
        size: u32,
        uploader: u64,
        node: u64,
    ) -> Result<Result<u64, FileRefused>, StoreError> {
        let name = name.to_owned();
        self.queue(|reply| Command::CreateFile {
            name,
            size,
            uploader,
            node,
            reply,
        })
        .await
        .wait()
        .await
    }

    /// Marks a file complete; call after its body is synced and renamed.
    pub async fn complete_file(&self, file: u64) -> Result<(), StoreError> {
        self.queue(|r| Command::CompleteFile(file, r))
            .await
            .wait()
            .await
    }

    /// Forgets an upload that will not finish.
    pub async fn discard_file(&self, file: u64) -> Result<(), StoreError> {
        self.queue(|r| Command::DiscardFile(file, r))
            .await
            .wait()
            .await
    }

    /// A file's metadata, complete or not.
    pub async fn file(&self, file: u64) -> Result<Option<FileMeta>, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => Self::read_sqlite(r, move |c| sqlite::reads::file(c, file)).await,
            Reads::Postgres(p) => postgres::reads::file(p, file).await,
        }
    }

    /// Every complete file, oldest first.
    pub async fn files(&self) -> Result<Vec<u64>, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => Self::read_sqlite(r, sqlite::reads::files).await,
            Reads::Postgres(p) => postgres::reads::files(p).await,
        }
    }

    /// Direct messages stored and not yet acknowledged, in all mailboxes.
    pub async fn queued_total(&self) -> Result<u64, StoreError> {
        match &self.reads {
            Reads::Sqlite(r) => Self::read_sqlite(r, sqlite::reads::queued_total).await,
            Reads::Postgres(p) => postgres::reads::queued_total(p).await,
        }
    }

    /// Removes session records older than `session_age` and, when
    /// `mail_age` is set, unread messages older than it; with PostgreSQL
    /// also the unfinished uploads of nodes whose lease has ended.
    pub async fn prune(
        &self,
        session_age: std::time::Duration,
        mail_age: Option<std::time::Duration>,
    ) -> Result<Pruned, StoreError> {
        self.prune_with(session_age, mail_age, None).await
    }

    /// [`Store::prune`], and (PostgreSQL) the unfinished uploads of `node`
    /// older than `orphan_age` that are not in `held`: uploads whose
    /// creation committed but whose answer was lost, or whose discard
    /// failed, and that no reservation of this process holds. Their
    /// numbers are in [`Pruned::uploads`], for their bodies to go.
    pub async fn prune_node(
        &self,
        session_age: std::time::Duration,
        mail_age: Option<std::time::Duration>,
        node: u64,
        held: Vec<u64>,
        orphan_age: std::time::Duration,
    ) -> Result<Pruned, StoreError> {
        let before = unix_now().saturating_sub(orphan_age.as_secs() as i64);
        self.prune_with(session_age, mail_age, Some((node, held, before)))
            .await
    }

    async fn prune_with(
        &self,
        session_age: std::time::Duration,
        mail_age: Option<std::time::Duration>,
        orphans: Option<(u64, Vec<u64>, i64)>,
    ) -> Result<Pruned, StoreError> {
        let now = unix_now();
        let before = |age: std::time::Duration| now.saturating_sub(age.as_secs() as i64);
        self.queue(|reply| Command::Prune {
            sessions_before: before(session_age),
            mail_before: mail_age.map(before),
            orphans,
            reply,
        })
        .await
        .wait()
        .await
    }
}
