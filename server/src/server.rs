//! Starting, running and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use proto::{ErrorCode, Packet};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::guesses::{GuessLimits, Guesses};
use crate::accounts::hasher::Hasher;
use crate::accounts::Accounts;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::config::TlsFiles;
use crate::connection;
use crate::context::Context;
use crate::disk::Disk;
use crate::hub::Hub;
use crate::outbox::Budget;
use crate::peers::PeerLimits;
use crate::store::{Store, StoreError, StoreLimits};
use crate::transfers::quota::Quota;

/// How often unread mail past its age and old session records are pruned,
/// at most: more often when an age is shorter (a quarter of it).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often the free disk space is read.
const DISK_EVERY: Duration = Duration::from_secs(2);

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
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The password hash's parameters are out of range.
    #[error("{0}")]
    Hash(#[from] crate::accounts::hasher::HashError),
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
    raise_open_files_limit();
    let limits = StoreLimits {
        mailbox_messages: config.max_mailbox_messages,
        mailbox_bytes: config.max_mailbox_bytes,
        user_files: config.max_user_files,
        queue: config.store_queue,
    };
    let (store, recovered, store_thread) = Store::open(
        &config.data_dir,
        config.sync == "full",
        config.min_file_charge,
        limits,
    )?;
    let blobs = Blobs::open(&config.data_dir, &recovered.incomplete_files)
        .map_err(io("cannot open the files directory"))?;
    let tls = match &config.tls {
        Some(files) => Some(tls_acceptor(files).map_err(StartError::Tls)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(&format!("cannot listen on {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot read the bound address"))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "chat server listening");
    let (params, hashing) = (config.hash_params(), config.max_hashing);
    let hasher = Hasher::new(params, hashing)?;
    let accounts = Accounts::new(
        config.accounts,
        hasher,
        Guesses::new(GuessLimits {
            free_per_name: config.free_guesses_per_name,
            free_per_address: config.free_guesses_per_ip,
            max_delay: config.max_guess_delay(),
        }),
    );
    let ctx = Arc::new(Context {
        accounts,
        quota: Quota::new(
            recovered.bytes_stored,
            config.storage_quota,
            config.max_user_reserved,
            config.min_file_charge,
        ),
        open_files: Arc::new(Semaphore::new(config.max_open_transfers)),
        budget: Budget::new(config.max_total_queued_bytes),
        peers: PeerLimits::new(config.peer_limits()),
        disk: Disk::new(config.data_dir.clone(), config.min_free_disk),
        hub: Hub::new(config.max_pending_broadcasts),
        config,
        store,
        blobs,
    });
    let shutdown = CancellationToken::new();
    let done = tokio::spawn(run(listener, ctx, shutdown.clone(), store_thread, tls));
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
    tls: Option<TlsAcceptor>,
) {
    let tracker = TaskTracker::new();
    tracker.spawn(expire_sessions(ctx.clone(), shutdown.clone()));
    tracker.spawn(upkeep(ctx.clone(), shutdown.clone()));
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
                let _ = stream.set_nodelay(true);
                match ctx.peers.connect(peer.ip()) {
                    // Two kinds of task, so that a plain connection's is no
                    // larger for TLS's sake (an idle session's memory).
                    Ok(address) => match tls.clone() {
                        None => {
                            tracker.spawn(async move {
                                connection::serve_plain(stream, peer, ctx, shutdown).await;
                                drop((permit, address));
                            });
                        }
                        Some(tls) => {
                            tracker.spawn(async move {
                                if let Some(tls) = Box::pin(handshake(&tls, stream, &ctx)).await {
                                    connection::serve_tls(tls, peer, ctx, shutdown).await;
                                }
                                drop((permit, address));
                            });
                        }
                    },
                    Err(refused) => {
                        tracker.spawn(async move {
                            refuse(stream, &ctx, refused.limit).await;
                            drop(permit);
                        });
                    }
                }
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
        );
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
            _ = interval.tick() => {
                for session in ctx.hub.take_expired(timeout) {
                    let why = format!("session expired after {:.3} s without a packet", timeout.as_secs_f64());
                    ctx.end_session(&session, ErrorCode::BadSession, why);
                }
            }
        }
    }
}

/// Tells a client over its address's connection limit why, and closes.
async fn refuse(mut stream: TcpStream, ctx: &Context, limit: usize) {
    let packet = Packet::Error {
        request_type: 0,
        code: ErrorCode::TooManyConnections,
        subject: 0,
        text: format!("your address has {limit} connections open, the most allowed"),
    };
    let mut buf = BytesMut::new();
    if packet.encode(&mut buf).is_ok() {
        let _ = tokio::time::timeout(ctx.config.write_timeout(), async {
            stream.write_all(&buf).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// Raises the soft limit on open files to the hard limit: each connection
/// and each transfer holds a descriptor, and the soft default (often 1024)
/// is far below what `--max-connections` allows.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(to = ?limit.maximum, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
        }
    }
}

/// The server's housekeeping: idle transfers are closed, the free disk
/// space is read, and old mail and session records are pruned.
async fn upkeep(ctx: Arc<Context>, shutdown: CancellationToken) {
    let idle = ctx.config.transfer_idle_timeout();
    let prune_every = [
        Some(ctx.config.session_record_age()),
        ctx.config.mail_expiry(),
    ]
    .into_iter()
    .flatten()
    .map(|age| age / 4)
    .fold(PRUNE_EVERY, Duration::min)
    .max(Duration::from_millis(100));
    let tick = (idle / 4)
        .min(prune_every)
        .clamp(Duration::from_millis(10), DISK_EVERY);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            now = interval.tick() => {
                let swept: usize = ctx.hub.all().iter().map(|s| s.transfers.sweep(idle)).sum();
                if swept > 0 {
                    tracing::info!(swept, "idle transfers closed");
                }
                let disk = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || disk.disk.refresh()).await;
                if last_prune.is_none_or(|t| now.duration_since(t) >= prune_every) {
                    last_prune = Some(now);
                    match ctx.store.prune(ctx.config.session_record_age(), ctx.config.mail_expiry()).await {
                        Ok(p) if p.sessions + p.messages > 0 => {
                            tracing::info!(sessions = p.sessions, messages = p.messages, "pruned");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "pruning failed"),
                    }
                }
            }
        }
    }
}

/// The TLS acceptor for the certificate chain and key in `files` (PEM).
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the TLS handshake, within the sign-in deadline.
async fn handshake(
    tls: &TlsAcceptor,
    tcp: TcpStream,
    ctx: &Context,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(ctx.config.sign_in_timeout(), tls.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
