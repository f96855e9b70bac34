//! Starting, running and stopping the server.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use proto::{ErrorCode, Packet};
use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::guesses::{GuessLimits, Guesses};
use crate::accounts::hasher::Hasher;
use crate::accounts::Accounts;
use crate::blobs::Blobs;
use crate::bus::nats::NatsBus;
use crate::bus::Bus;
use crate::config::Config;
use crate::config::TlsFiles;
use crate::connection;
use crate::context::Context;
use crate::disk::Disk;
use crate::hub::Hub;
use crate::lease::Lease;
use crate::observe::names;
use crate::outbox::Budget;
use crate::peers::PeerLimits;
use crate::proxy_header;
use crate::store::{NodeLease, Store, StoreError, StoreLimits};
use crate::transfers::quota::Quota;

/// How often unread mail past its age and old session records are pruned,
/// at most: more often when an age is shorter (a quarter of it).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How old an unfinished upload of this node that no reservation holds
/// must be before pruning removes it (cluster only): far longer than the
/// moment between its row's commit and the reservation taking it.
const ORPHAN_AGE: Duration = Duration::from_secs(600);
/// How often the free disk space is read.
const DISK_EVERY: Duration = Duration::from_secs(2);
/// How often the gauges of [`crate::observe`] are read (the mailboxes'
/// depth is a count over the database).
const GAUGES_EVERY: Duration = Duration::from_secs(5);

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
    /// The settings contradict each other.
    #[error("{0}")]
    Settings(String),
    /// The bus to the other servers (NATS) could not be reached.
    #[error("{0}")]
    Bus(String),
    /// The password hash's parameters are out of range.
    #[error("{0}")]
    Hash(#[from] crate::accounts::hasher::HashError),
}

/// A server running on the tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    doors: Arc<Doors>,
    done: tokio::task::JoinHandle<()>,
}

/// An in-process connection was refused: the server is at
/// `--max-connections`, or shutting down.
#[derive(Debug, Error)]
#[error("the chat server takes no more connections now")]
pub struct Full;

impl RunningServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.doors.shutdown.clone()
    }

    /// Why the server stopped serving on its own, if it did: it lost its
    /// lease in the cluster. The process should then exit with an error.
    pub fn fenced(&self) -> Option<String> {
        self.doors
            .ctx
            .lease
            .as_ref()
            .and_then(|l| l.fenced().map(str::to_owned))
    }

    /// A handle that opens in-process connections, for a gateway that
    /// embeds the server.
    pub fn connector(&self) -> Connector {
        Connector(Arc::downgrade(&self.doors))
    }

    /// Stops accepting, tells every client, flushes, closes the store, and
    /// waits for all of it.
    pub async fn shutdown(self) {
        self.doors.shutdown.cancel();
        self.stopped().await
    }

    /// Waits until the server has stopped (after its token was cancelled).
    pub async fn stopped(self) {
        // The store closes when the last reference to the context is gone,
        // and the server waits for that: let go of ours first.
        let Self { doors, done, .. } = self;
        drop(doors);
        let _ = done.await;
    }
}

/// Opens connections to the server inside its own process, as an
/// embedding gateway does for each browser: no socket, and the browser's
/// own address for the per-address limits and the logs, with no PROXY
/// header to trust.
/// It does not keep the server alive: once the server has stopped, it
/// refuses.
#[derive(Debug, Clone)]
pub struct Connector(Weak<Doors>);

impl Connector {
    /// A new connection on behalf of `client`, admitted like one accepted
    /// from the listener (the per-address limit's refusal arrives on it as
    /// an ERROR); bytes written to the returned stream are the client's.
    pub fn connect(&self, client: SocketAddr) -> Result<DuplexStream, Full> {
        let doors = self.0.upgrade().ok_or(Full)?;
        if doors.shutdown.is_cancelled() {
            return Err(Full);
        }
        let permit = doors
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full)?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        doors.admit(Admitted::Local(theirs), client, permit);
        Ok(ours)
    }

    /// Whether the server still takes connections.
    pub fn is_running(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|doors| !doors.shutdown.is_cancelled())
    }
}

/// Bytes an in-process connection buffers each way, like a socket's
/// buffer: enough for a batch of packets, small enough for thousands.
const PIPE_BUFFER: usize = 64 * 1024;

/// What a connection arrives on.
enum Admitted {
    Tcp(TcpStream),
    Local(DuplexStream),
}

/// How connections get in, shared by the accept loop and [`Connector`]:
/// the connection permits, the PROXY header of trusted proxies, the
/// per-address limits and TLS; every connection's task is tracked here.
struct Doors {
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Doors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doors")
            .field("tls", &self.tls.is_some())
            .field("permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Doors {
    /// Takes a connection from the listener. A trusted proxy's must first
    /// name its client in a PROXY header, read in a task of its own.
    fn accept(
        self: &Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        if !self.ctx.config.is_trusted_proxy(peer.ip()) {
            self.admit(Admitted::Tcp(stream), peer, permit);
            return;
        }
        let doors = self.clone();
        self.tracker.spawn(async move {
            let read = proxy_header::read(&mut stream);
            let client = tokio::select! {
                _ = doors.shutdown.cancelled() => return,
                r = tokio::time::timeout(doors.ctx.config.sign_in_timeout(), read) => r,
            };
            match client {
                Ok(Ok(client)) => {
                    let client = client.unwrap_or(peer);
                    tracing::debug!(proxy = %peer, %client, "connection through a trusted proxy");
                    doors.admit(Admitted::Tcp(stream), client, permit);
                }
                Ok(Err(e)) => {
                    metrics::counter!(names::CONNECTIONS_REFUSED, "reason" => "proxy_header")
                        .increment(1);
                    tracing::warn!(proxy = %peer, error = %e, "connection refused");
                }
                Err(_) => {
                    metrics::counter!(names::CONNECTIONS_REFUSED, "reason" => "proxy_header")
                        .increment(1);
                    tracing::warn!(proxy = %peer, "no PROXY header in time; connection closed");
                }
            }
        });
    }

    /// Applies the per-address limit to `peer` and serves the connection,
    /// or tells it why not.
    fn admit(&self, conn: Admitted, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let (ctx, shutdown) = (self.ctx.clone(), self.shutdown.clone());
        let address = match ctx.peers.connect(peer.ip()) {
            Ok(address) => address,
            Err(refused) => {
                metrics::counter!(names::CONNECTIONS_REFUSED, "reason" => "per_address")
                    .increment(1);
                self.tracker.spawn(async move {
                    match conn {
                        Admitted::Tcp(stream) => refuse(stream, &ctx, refused.limit).await,
                        Admitted::Local(stream) => refuse(stream, &ctx, refused.limit).await,
                    }
                    drop(permit);
                });
                return;
            }
        };
        // Three kinds of task, so that a plain connection's is no larger
        // for TLS's sake (an idle session's memory).
        match (conn, self.tls.clone()) {
            (Admitted::Tcp(stream), None) => {
                self.tracker.spawn(async move {
                    connection::serve_plain(stream, peer, ctx, shutdown).await;
                    drop((permit, address));
                });
            }
            (Admitted::Tcp(stream), Some(tls)) => {
                self.tracker.spawn(async move {
                    if let Some(tls) = Box::pin(handshake(&tls, stream, &ctx)).await {
                        connection::serve_stream(tls, peer, ctx, shutdown).await;
                    }
                    drop((permit, address));
                });
            }
            (Admitted::Local(stream), _) => {
                self.tracker.spawn(async move {
                    connection::serve_stream(stream, peer, ctx, shutdown).await;
                    drop((permit, address));
                });
            }
        }
    }
}

/// Opens the data directory and the database, binds the listener and
/// starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| StartError::Io { what, source }
    };
    raise_open_files_limit();
    let limits = StoreLimits {
        mailbox_messages: config.max_mailbox_messages,
        mailbox_bytes: config.max_mailbox_bytes,
        user_files: config.max_user_files,
        queue: config.store_queue,
        broadcasts_kept: config.max_pending_broadcasts,
        storage_quota: config.storage_quota,
        min_file_charge: config.min_file_charge,
    };
    let full_sync = config.sync == "full";
    if config.nats.is_some() && config.postgres.is_none() {
        return Err(StartError::Settings(
            "--nats needs --postgres (CHAT_POSTGRES): one server on SQLite has no other to reach"
                .into(),
        ));
    }
    let (store, recovered, writer, blobs, lock, disk_dir) = match &config.postgres {
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(io(&format!("cannot create {}", config.data_dir.display())))?;
            let lock = lock_data_dir(&config.data_dir).await?;
            let (store, recovered, thread) =
                Store::open(&config.data_dir, full_sync, config.min_file_charge, limits)?;
            let blobs = Blobs::open(&config.data_dir, &recovered.incomplete_files)
                .map_err(io("cannot open the files directory"))?;
            let dir = config.data_dir.clone();
            (
                store,
                recovered,
                Writer::Thread(thread),
                blobs,
                Some(lock),
                dir,
            )
        }
        Some(url) => {
            let Some(files) = config.files_dir.clone() else {
                return Err(StartError::Settings(
                    "--postgres needs --files-dir (CHAT_FILES_DIR): the directory of file \
                     bodies that every server on the database shares"
                        .into(),
                ));
            };
            if config.nats.is_none() {
                return Err(StartError::Settings(
                    "--postgres needs --nats (CHAT_NATS): the NATS server that carries live \
                     deliveries between the servers on the database"
                        .into(),
                ));
            }
            // No lock on a data directory: the database's sequences and
            // row locks keep several servers' numbers apart.
            let (store, recovered, task) =
                Store::open_postgres(url, full_sync, config.min_file_charge, limits).await?;
            let blobs = Blobs::open_shared(&files)
                .map_err(io(&format!("cannot open {}", files.display())))?;
            (store, recovered, Writer::Task(task), blobs, None, files)
        }
    };
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
    match &config.postgres {
        None => {
            tracing::info!(%addr, data_dir = %config.data_dir.display(), "chat server listening")
        }
        // The URL may carry a password: not logged.
        Some(_) => {
            tracing::info!(%addr, files_dir = %disk_dir.display(), "chat server listening, state in PostgreSQL")
        }
    }
    // On PostgreSQL the server is a node of a cluster, with a lease.
    let node = match &config.postgres {
        Some(url) => {
            let sent = crate::hub::now_ms();
            let name = format!("{addr} pid {}", std::process::id());
            let (db, id) = NodeLease::join(url, &name, config.lease()).await?;
            tracing::info!(node = id, %name, lease = ?config.lease(), "joined the cluster");
            Some((Arc::new(Lease::new(id, config.lease(), sent)), db))
        }
        None => None,
    };
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
    let hub = Arc::new(Hub::new(config.max_pending_broadcasts));
    let bus = match &config.nats {
        None => Bus::Local(hub.clone()),
        Some(url) => Bus::Nats(
            NatsBus::connect(url, hub.clone())
                .await
                .map_err(|e| StartError::Bus(e.to_string()))?,
        ),
    };
    let ctx = Arc::new(Context {
        accounts,
        quota: Quota::new(
            recovered.bytes_stored,
            // With PostgreSQL the database keeps the quota for every node
            // together (its `storage` row); here only each user's uploads.
            if config.postgres.is_some() {
                u64::MAX
            } else {
                config.storage_quota
            },
            config.max_user_reserved,
            config.min_file_charge,
        ),
        open_files: Arc::new(Semaphore::new(config.max_open_transfers)),
        budget: Budget::new(config.max_total_queued_bytes),
        peers: PeerLimits::new(config.peer_limits()),
        disk: Disk::new(disk_dir, config.min_free_disk),
        hub,
        bus,
        lease: node.as_ref().map(|(lease, _)| lease.clone()),
        config,
        store,
        blobs,
    });
    let doors = Arc::new(Doors {
        permits: Arc::new(Semaphore::new(ctx.config.max_connections.max(1))),
        ctx,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        tls,
    });
    let doors_for_run = doors.clone();
    let done = tokio::spawn(async move {
        run(listener, doors_for_run, writer, node.map(|(_, db)| db)).await;
        // Held until the store is closed.
        drop(lock);
    });
    Ok(RunningServer { addr, doors, done })
}

/// The store's writer, waited for at shutdown.
enum Writer {
    /// SQLite's thread.
    Thread(std::thread::JoinHandle<()>),
    /// PostgreSQL's task.
    Task(tokio::task::JoinHandle<()>),
}

async fn run(
    listener: TcpListener,
    doors: Arc<Doors>,
    writer: Writer,
    node_lease: Option<NodeLease>,
) {
    let (ctx, shutdown, tracker) = (
        doors.ctx.clone(),
        doors.shutdown.clone(),
        doors.tracker.clone(),
    );
    tracker.spawn(expire_sessions(ctx.clone(), shutdown.clone()));
    // A peer's lease ended: its unfinished uploads go at the next tick.
    let prune_now = Arc::new(tokio::sync::Notify::new());
    tracker.spawn(upkeep(ctx.clone(), prune_now.clone(), shutdown.clone()));
    if let (Some(lease), Some(db)) = (ctx.lease.clone(), node_lease) {
        let length = ctx.config.lease();
        let bus_ctx = ctx.clone();
        tracker.spawn(crate::lease::keep(
            lease,
            db,
            length,
            shutdown.clone(),
            move || {
                bus_ctx.bus.peer_ended();
                prune_now.notify_one();
            },
        ));
    }
    if ctx.lease.is_some() {
        let every = ctx.config.lease() / 3;
        tracker.spawn(crate::owners::keep_in_step(
            ctx.clone(),
            every,
            shutdown.clone(),
        ));
    }
    if let Bus::Nats(bus) = &ctx.bus {
        tracker.spawn(bus.clone().run_catch_ups(ctx.clone(), shutdown.clone()));
        if ctx.lease.is_some() {
            tracker.spawn(
                bus.clone()
                    .serve_releases(ctx.node(), ctx.clone(), shutdown.clone()),
            );
        }
    }
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = doors.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                doors.accept(stream, peer, permit);
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
    // In-process connections can no longer be made: `Connector` checks
    // the token first.
    drop(doors);
    tracing::info!("shutting down: closing connections");
    tracker.close();
    tracker.wait().await;
    for session in ctx.hub.drain() {
        ctx.end_session(&session, ErrorCode::ShuttingDown, ctx.stop_reason());
    }
    if ctx.store.is_shared() {
        // The names this node held are free at once, not when its lease
        // ends (a node that lost PostgreSQL gives up after a while).
        let freed =
            tokio::time::timeout(Duration::from_secs(2), ctx.store.node_gone(ctx.node())).await;
        if !matches!(freed, Ok(Ok(()))) {
            tracing::warn!("the names this node held are freed when its lease ends");
        }
    }
    // The store thread ends when the last handle is gone.
    drop(ctx);
    match writer {
        Writer::Thread(thread) => {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Writer::Task(task) => {
            let _ = task.await;
        }
    }
    tracing::info!("stopped");
}

/// Reads the gauges that are states rather than events: sessions,
/// transfers, the mailboxes' depth.
async fn sample_gauges(ctx: &Context) {
    let sessions = ctx.hub.all();
    let attached = sessions.iter().filter(|s| s.is_attached()).count();
    metrics::gauge!(names::SESSIONS).set(sessions.len() as f64);
    metrics::gauge!(names::SESSIONS_ATTACHED).set(attached as f64);
    let open = ctx
        .config
        .max_open_transfers
        .saturating_sub(ctx.open_files.available_permits());
    metrics::gauge!(names::TRANSFERS).set(open as f64);
    match ctx.store.queued_total().await {
        Ok(n) => metrics::gauge!(names::MAILBOX_MESSAGES).set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count the mailboxes"),
    }
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
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, ctx: &Context, limit: usize) {
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

/// Takes the data directory for this process: two servers on one
/// directory would hand out the same numbers, since each keeps its
/// counters in memory. The lock is the kernel's (`flock`), so it ends with
/// the process, however that ends; the operator's commands (`account`,
/// `backup`) do not take it and run beside the server.
///
/// A held lock is tried again for [`LOCK_GRACE`] before giving up: the
/// lock belongs to the open file, and a child that the embedding process
/// forks holds a copy of every descriptor until it execs, so a server
/// restarted in the same process can find the old lock alive for that
/// moment after the old server let go of it.
async fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use rustix::fs::{flock, FlockOperation};
    use rustix::io::Errno;
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Io {
            what: format!("cannot open {}", path.display()),
            source,
        })?;
    let deadline = tokio::time::Instant::now() + LOCK_GRACE;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(Errno::WOULDBLOCK) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e @ Errno::WOULDBLOCK) => {
                return Err(StartError::Io {
                    what: format!(
                        "another chat server is using {} (it holds {})",
                        dir.display(),
                        path.display()
                    ),
                    source: e.into(),
                })
            }
            Err(e) => {
                return Err(StartError::Io {
                    what: format!("cannot lock {}", path.display()),
                    source: e.into(),
                })
            }
        }
    }
}

/// How long a start waits for a data directory's lock that is held.
const LOCK_GRACE: Duration = Duration::from_secs(1);

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
/// space is read, and old mail and session records are pruned (and, in a
/// cluster, the unfinished uploads of dead nodes), also when `prune_now`
/// is notified.
async fn upkeep(
    ctx: Arc<Context>,
    prune_now: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
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
    let mut last_gauges: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = prune_now.notified() => last_prune = None,
            now = interval.tick() => {
                let swept: usize = ctx.hub.all().iter().map(|s| s.transfers.sweep(idle)).sum();
                if swept > 0 {
                    tracing::info!(swept, "idle transfers closed");
                }
                let disk = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || disk.disk.refresh()).await;
                if last_gauges.is_none_or(|t| now.duration_since(t) >= GAUGES_EVERY) {
                    last_gauges = Some(now);
                    sample_gauges(&ctx).await;
                }
                if last_prune.is_none_or(|t| now.duration_since(t) >= prune_every) {
                    last_prune = Some(now);
                    let (records, mail) = (ctx.config.session_record_age(), ctx.config.mail_expiry());
                    let pruned = if ctx.lease.is_some() {
                        let held = ctx.quota.live_uploads();
                        ctx.store.prune_node(records, mail, ctx.node(), held, ORPHAN_AGE).await
                    } else {
                        ctx.store.prune(records, mail).await
                    };
                    match pruned {
                        Ok(p) => {
                            if p.sessions + p.messages > 0 || !p.uploads.is_empty() {
                                tracing::info!(
                                    sessions = p.sessions,
                                    messages = p.messages,
                                    uploads = p.uploads.len(),
                                    "pruned"
                                );
                            }
                            if !p.uploads.is_empty() {
                                let blobs = ctx.blobs.clone();
                                let _ = tokio::task::spawn_blocking(move || {
                                    p.uploads.iter().for_each(|f| blobs.discard(*f))
                                })
                                .await;
                            }
                        }
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
