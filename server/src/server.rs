//! Starting, running and stopping the server.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::connection;
use crate::context::Context;
use crate::hub::Hub;
use crate::store::{Store, StoreError};

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory or the listening socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
}

/// A server running on the tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, tells every client, flushes, closes the store, and
    /// waits for all of it.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Waits until the server has stopped (after its token was cancelled).
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// Opens the data directory and the database, binds the listener and
/// starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| StartError::Io { what, source }
    };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(&format!("cannot create {}", config.data_dir.display())))?;
    let (store, recovered, store_thread) = Store::open(&config.data_dir, config.sync == "full")?;
    let blobs = Blobs::open(&config.data_dir, &recovered.incomplete_files)
        .map_err(io("cannot open the files directory"))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(&format!("cannot listen on {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot read the bound address"))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "chat server listening");
    let ctx = Arc::new(Context {
        config,
        store,
        blobs,
        hub: Hub::default(),
        storage_used: AtomicU64::new(recovered.bytes_stored),
    });
    let shutdown = CancellationToken::new();
    let done = tokio::spawn(run(listener, ctx, shutdown.clone(), store_thread));
    Ok(RunningServer {
        addr,
        shutdown,
        done,
    })
}

async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    store_thread: std::thread::JoinHandle<()>,
) {
    let tracker = TaskTracker::new();
    tracker.spawn(expire_sessions(ctx.clone(), shutdown.clone()));
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                tracker.spawn(async move {
                    connection::serve(stream, peer, ctx, shutdown).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Running out of descriptors must not spin the loop.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: closing connections");
    tracker.close();
    tracker.wait().await;
    for session in ctx.hub.drain() {
        ctx.end_session(
            &session,
            ErrorCode::ShuttingDown,
            "the server is shutting down".into(),
        )
        .await;
    }
    // The store thread ends when the last handle is gone.
    drop(ctx);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    tracing::info!("stopped");
}

/// Ends sessions that have been silent longer than the timeout.
async fn expire_sessions(ctx: Arc<Context>, shutdown: CancellationToken) {
    let timeout = ctx.config.session_timeout();
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            now = interval.tick() => {
                for session in ctx.hub.take_expired(now, timeout) {
                    let why = format!("session expired after {:.3} s without a packet", timeout.as_secs_f64());
                    ctx.end_session(&session, ErrorCode::BadSession, why).await;
                }
            }
        }
    }
}
