//! The write half of the storage interface: the requests an engine's
//! writer receives, and how their answers are held until the batch holding
//! them has committed. Shared by both engines, so a request means the same
//! to each.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{FileRefused, Pruned, StoreError, Stored};

/// One write request to the engine's writer, with the channel for its answer.
#[derive(Debug)]
pub(in crate::store) enum Command {
    SignIn(String, oneshot::Sender<Result<u64, StoreError>>),
    SignInUnprotected(String, oneshot::Sender<Result<Option<u64>, StoreError>>),
    Claim {
        name: String,
        hash: String,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
    SetPassword {
        user: u64,
        hash: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    NewSession(u64, oneshot::Sender<Result<u64, StoreError>>),
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
        /// The packet delivered, kept by engines that keep broadcasts.
        body: Bytes,
        reply: oneshot::Sender<Result<Stored, StoreError>>,
    },
    Ack(u64, u64, oneshot::Sender<Result<(), StoreError>>),
    CreateFile {
        name: String,
        size: u32,
        uploader: u64,
        /// The node receiving the upload (0 alone).
        node: u64,
        reply: oneshot::Sender<Result<Result<u64, FileRefused>, StoreError>>,
    },
    CompleteFile(u64, oneshot::Sender<Result<(), StoreError>>),
    Barrier(oneshot::Sender<Result<(), StoreError>>),
    DiscardFile(u64, oneshot::Sender<Result<(), StoreError>>),
    Prune {
        /// Unix seconds before which session records go.
        sessions_before: i64,
        /// Unix seconds before which unread mail goes, if it expires.
        mail_before: Option<i64>,
        /// This node's unfinished uploads that no reservation holds (in a
        /// cluster): (node, uploads held, unix seconds before which the
        /// others go).
        orphans: Option<(u64, Vec<u64>, i64)>,
        reply: oneshot::Sender<Result<Pruned, StoreError>>,
    },
}

/// Answers held until the transaction commits, so nothing is acknowledged
/// before it is durable. Called with the commit's outcome.
pub(in crate::store) type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// The same failure for every request of a batch that could not commit.
pub(in crate::store) fn copy_err(e: &StoreError) -> StoreError {
    StoreError::Batch(e.to_string())
}

/// Builds the reply for a command's result, to be sent after the commit.
/// A database failure is handed back beside it: it fails the batch.
pub(in crate::store) fn deferred<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> Result<Reply, (Reply, StoreError)> {
    let failure = match &result {
        Err(StoreError::Database(e)) => Some(StoreError::Batch(e.to_string())),
        _ => None,
    };
    let reply: Reply = Box::new(move |commit| {
        let out = match (commit, result) {
            (Ok(()), r) => r,
            (Err(e), _) => Err(copy_err(e)),
        };
        let _ = reply.send(out);
    });
    match failure {
        None => Ok(reply),
        Some(e) => Err((reply, e)),
    }
}

/// Answers a command that was not run, with `err` (or, without one, that
/// the store is closed).
pub(in crate::store) fn answer(command: Command, err: Result<(), &StoreError>) {
    let e = || err.err().map(copy_err).unwrap_or(StoreError::Closed);
    match command {
        Command::SignIn(_, r) | Command::NewSession(_, r) => drop(r.send(Err(e()))),
        Command::SignInUnprotected(_, r) | Command::Claim { reply: r, .. } => {
            drop(r.send(Err(e())))
        }
        Command::SetPassword { reply, .. } => drop(reply.send(Err(e()))),
        Command::StoreDirect { reply, .. } | Command::StoreBroadcast { reply, .. } => {
            drop(reply.send(Err(e())))
        }
        Command::Ack(_, _, r)
        | Command::CompleteFile(_, r)
        | Command::DiscardFile(_, r)
        | Command::Barrier(r) => drop(r.send(Err(e()))),
        Command::CreateFile { reply, .. } => drop(reply.send(Err(e()))),
        Command::Prune { reply, .. } => drop(reply.send(Err(e()))),
    }
}
