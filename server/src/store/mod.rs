//! Durable state: users, sessions issued, queued messages, broadcasts and
//! file metadata.
//!
//! [`Store`] is the narrow interface the rest of the server uses; today it
//! is backed by one SQLite database owned by a dedicated thread
//! ([`sqlite`]), which commits whatever requests have queued up in one
//! transaction (group commit), so one disk sync serves many messages. A
//! multi-server deployment replaces this module, not its callers.

mod accepted;
mod sqlite;

use std::path::Path;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::oneshot;

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed (disk full, I/O error, corruption).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// One request to the store thread, with the channel for its answer.
#[derive(Debug)]
enum Command {
    SignIn(String, oneshot::Sender<Result<u64, StoreError>>),
    NewSession(u64, oneshot::Sender<Result<u64, StoreError>>),
    UserName(u64, oneshot::Sender<Result<Option<String>, StoreError>>),
    StoreDirect {
        from: u64,
        number: u64,
        to: u64,
        body: Bytes,
        reply: oneshot::Sender<Result<Stored, StoreError>>,
    },
    StoreBroadcast {
        from: u64,
        number: u64,
        body: Bytes,
        reply: oneshot::Sender<Result<Stored, StoreError>>,
    },
    Ack(u64, u64, oneshot::Sender<Result<(), StoreError>>),
    QueuedFor(u64, oneshot::Sender<Result<Vec<Queued>, StoreError>>),
    CreateFile {
        name: String,
        size: u32,
        uploader: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    CompleteFile(u64, oneshot::Sender<Result<(), StoreError>>),
    DiscardFile(u64, oneshot::Sender<Result<(), StoreError>>),
    File(u64, oneshot::Sender<Result<Option<FileMeta>, StoreError>>),
    Files(oneshot::Sender<Result<Vec<u64>, StoreError>>),
}

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
    tx: std::sync::mpsc::Sender<Command>,
}

/// What the store found when it opened.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Files whose upload never finished; their rows are gone and their
    /// bodies must be removed.
    pub incomplete_files: Vec<u64>,
    /// Bytes of complete files, counted against the quota.
    pub bytes_stored: u64,
}

macro_rules! ask {
    ($self:ident, $variant:ident $(, $arg:expr)*) => {{
        let (tx, rx) = oneshot::channel();
        $self.tx.send(Command::$variant($($arg,)* tx)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }};
}

impl Store {
    /// Opens (creating if needed) the database in `dir` and starts its
    /// thread. `full_sync` makes every commit reach the disk.
    pub fn open(
        dir: &Path,
        full_sync: bool,
    ) -> Result<(Self, Recovered, std::thread::JoinHandle<()>), StoreError> {
        let (conn, recovered) = sqlite::open(&dir.join("chat.sqlite3"), full_sync)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || sqlite::run(conn, rx))
            .map_err(|_| StoreError::Closed)?;
        Ok((Self { tx }, recovered, thread))
    }

    /// The user number for `name`, created on first use.
    pub async fn sign_in(&self, name: &str) -> Result<u64, StoreError> {
        ask!(self, SignIn, name.to_owned())
    }

    /// A new session number for `user`: random, never 0, never issued before.
    pub async fn new_session(&self, user: u64) -> Result<u64, StoreError> {
        ask!(self, NewSession, user)
    }

    /// The name of user `user`, if it exists.
    pub async fn user_name(&self, user: u64) -> Result<Option<String>, StoreError> {
        ask!(self, UserName, user)
    }

    /// Stores a direct message durably, once per (sender, number). The
    /// request is queued at once; [`Pending::wait`] gives the outcome after
    /// the commit, so a connection can queue several before waiting.
    pub fn store_direct(&self, from: u64, number: u64, to: u64, body: Bytes) -> Pending<Stored> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Command::StoreDirect {
            from,
            number,
            to,
            body,
            reply,
        });
        Pending(rx)
    }

    /// Records a broadcast once per (sender, number); its delivery number
    /// is the returned id with bit 63 set. Queued like [`Store::store_direct`].
    pub fn store_broadcast(&self, from: u64, number: u64, body: Bytes) -> Pending<Stored> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Command::StoreBroadcast {
            from,
            number,
            body,
            reply,
        });
        Pending(rx)
    }

    /// The recipient acknowledged direct delivery `delivery`: forget it.
    /// Nobody waits for this: it commits with the next batch, and if the
    /// server dies first the message is delivered again, which clients
    /// recognise by its number.
    pub fn forget(&self, recipient: u64, delivery: u64) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.tx.send(Command::Ack(recipient, delivery, tx));
    }

    /// Every message queued for `user`, oldest first.
    pub async fn queued_for(&self, user: u64) -> Result<Vec<Queued>, StoreError> {
        ask!(self, QueuedFor, user)
    }

    /// Registers an upload and returns the file number it will have.
    pub async fn create_file(
        &self,
        name: &str,
        size: u32,
        uploader: u64,
    ) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::CreateFile {
                name: name.to_owned(),
                size,
                uploader,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Marks a file complete; call after its body is synced and renamed.
    pub async fn complete_file(&self, file: u64) -> Result<(), StoreError> {
        ask!(self, CompleteFile, file)
    }

    /// Forgets an upload that will not finish.
    pub async fn discard_file(&self, file: u64) -> Result<(), StoreError> {
        ask!(self, DiscardFile, file)
    }

    /// A file's metadata, complete or not.
    pub async fn file(&self, file: u64) -> Result<Option<FileMeta>, StoreError> {
        ask!(self, File, file)
    }

    /// Every complete file, oldest first.
    pub async fn files(&self) -> Result<Vec<u64>, StoreError> {
        ask!(self, Files)
    }
}
