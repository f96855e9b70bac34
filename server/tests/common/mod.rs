//! A real server on port 0 and a raw packet-level test client over TCP.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use proto::codec::PacketCodec;
use proto::{ErrorCode, Packet};
use server::{Config, RunningServer};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub mod traffic;

/// PostgreSQL and nats-server processes, shared with the gateway's tests
/// and `cargo xtask cluster`.
pub use devservices::{nats, postgres};

/// How long a test waits for an event before failing; raise it on a slow
/// machine with CHAT_TEST_TIMEOUT_SECS.
pub fn patience() -> Duration {
    devservices::patience()
}

/// Waits until `cond` holds, checking every few milliseconds; fails the
/// test after [`patience`]. For effects that happen in the background
/// (a discarded upload's body being removed).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + patience();
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {:?}",
            patience()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in_with(tempfile::tempdir().unwrap(), tweak).await
    }

    /// A server on a data directory prepared by the test.
    pub async fn start_in(dir: TempDir) -> Self {
        Self::start_in_with(dir, |_| {}).await
    }

    async fn start_in_with(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        // RUST_LOG=server=debug shows the server's log in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut config = Config::for_data_dir(dir.path());
        config.sync = "normal".into();
        tweak(&mut config);
        let server = server::start(config.clone()).await.unwrap();
        Self {
            addr: server.local_addr(),
            server: Some(server),
            dir,
            config,
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let server = server::start(self.config.clone()).await.unwrap();
        self.addr = server.local_addr();
        self.server = Some(server);
    }

    pub async fn peer(&self) -> Peer {
        Peer::connect(self.addr).await
    }

    pub async fn signed_in(&self, name: &str) -> Peer {
        let mut p = self.peer().await;
        p.sign_in(name).await;
        p
    }
}

pub struct Peer {
    pub framed: Framed<TcpStream, PacketCodec>,
    pub user: u64,
    pub session: u64,
}

impl Peer {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self {
            framed: Framed::new(stream, PacketCodec),
            user: 0,
            session: 0,
        }
    }

    pub async fn send(&mut self, p: Packet) {
        tokio::time::timeout(patience(), self.framed.send(p))
            .await
            .unwrap_or_else(|_| panic!("could not send within {:?}", patience()))
            .unwrap();
    }

    /// Sends raw bytes, for malformed input.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next packet; fails the test on timeout, close or garbage.
    pub async fn recv(&mut self) -> Packet {
        match tokio::time::timeout(patience(), self.framed.next()).await {
            Ok(Some(Ok(p))) => p,
            Ok(other) => panic!("connection ended or broke: {other:?}"),
            Err(_) => panic!("no packet within {:?}", patience()),
        }
    }

    /// The next packet that is not an incoming message.
    pub async fn recv_skipping_incoming(&mut self) -> Packet {
        loop {
            match self.recv().await {
                Packet::IncomingMessage { .. } => continue,
                p => return p,
            }
        }
    }

    /// Expects an ERROR and returns its code, request type, subject and text.
    pub async fn recv_error(&mut self) -> (ErrorCode, u16, u64, String) {
        match self.recv().await {
            Packet::Error {
                request_type,
                code,
                subject,
                text,
            } => (code, request_type, subject, text),
            p => panic!("expected an ERROR, got {p:?}"),
        }
    }

    /// Waits until the server closes the connection.
    pub async fn expect_closed(&mut self) {
        match tokio::time::timeout(patience(), self.framed.next()).await {
            Ok(None) | Ok(Some(Err(_))) => {}
            Ok(Some(Ok(p))) => panic!("expected the connection to close, got {p:?}"),
            Err(_) => panic!("connection still open after {:?}", patience()),
        }
    }

    pub async fn sign_in(&mut self, name: &str) {
        self.send(Packet::SessionRequest { name: name.into() })
            .await;
        match self.recv().await {
            Packet::SessionCookie { user, session } => {
                assert_ne!(session, 0);
                self.user = user;
                self.session = session;
            }
            p => panic!("sign-in as {name} failed: {p:?}"),
        }
    }

    /// Sends ACCOUNT SIGN IN and returns the answer: a SESSION COOKIE
    /// (recorded) or an ERROR.
    pub async fn account_sign_in(&mut self, name: &str, password: &str) -> Packet {
        self.send(Packet::AccountSignIn {
            name: name.into(),
            password: password.into(),
        })
        .await;
        let answer = self.recv().await;
        if let Packet::SessionCookie { user, session } = answer {
            self.user = user;
            self.session = session;
        }
        answer
    }

    pub async fn message(&mut self, to: u64, number: u64, body: &str) {
        let session = self.session;
        self.send(Packet::MessageRequest {
            session,
            to,
            message: number,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
        .await;
        assert_eq!(
            self.recv_skipping_incoming().await,
            Packet::MessageResponse { message: number }
        );
    }

    /// Sends a broadcast and expects its answer next.
    pub async fn broadcast(&mut self, number: u64, body: &str) {
        let seen = self.broadcast_seeing(number, body).await;
        assert_eq!(seen, [], "incoming messages before the broadcast's answer");
    }

    /// Sends a broadcast and waits for its answer; returns the incoming
    /// messages (from, number, body) that came before it.
    pub async fn broadcast_seeing(&mut self, number: u64, body: &str) -> Vec<(u64, u64, Bytes)> {
        let session = self.session;
        self.send(Packet::BroadcastRequest {
            session,
            message: number,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
        .await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Packet::BroadcastResponse { message } if message == number => return seen,
                Packet::IncomingMessage {
                    from,
                    message,
                    body,
                } => seen.push((from, message, body)),
                p => panic!("expected the broadcast's answer, got {p:?}"),
            }
        }
    }

    /// The next packet is not an incoming message: what this peer was sent
    /// before the call has all been read (the USERS answer comes after it).
    pub async fn nothing_more_incoming(&mut self) {
        let session = self.session;
        self.send(Packet::UsersRequest { session }).await;
        match self.recv().await {
            Packet::UsersResponse { .. } => {}
            p => panic!("expected nothing before the users list, got {p:?}"),
        }
    }

    /// Expects an incoming message and returns (from, number, body).
    pub async fn incoming(&mut self) -> (u64, u64, Bytes) {
        match self.recv().await {
            Packet::IncomingMessage {
                from,
                message,
                body,
            } => (from, message, body),
            p => panic!("expected an incoming message, got {p:?}"),
        }
    }

    pub async fn ack(&mut self, message: u64) {
        self.send(Packet::IncomingMessageAck { message }).await;
    }

    pub async fn users(&mut self) -> Vec<u64> {
        let session = self.session;
        self.send(Packet::UsersRequest { session }).await;
        match self.recv_skipping_incoming().await {
            Packet::UsersResponse { users } => users,
            p => panic!("expected users, got {p:?}"),
        }
    }

    pub async fn files(&mut self) -> Vec<u64> {
        let session = self.session;
        self.send(Packet::FilesRequest { session }).await;
        match self.recv_skipping_incoming().await {
            Packet::FilesResponse { files } => files,
            p => panic!("expected files, got {p:?}"),
        }
    }

    /// Uploads `data`, sending every chunk before reading any answer, in
    /// the order given by `order` (a permutation of chunk numbers).
    pub async fn upload_in_order(&mut self, name: &str, data: &[u8], order: &[u32]) -> u64 {
        let (file, transaction) = self.start_upload(name, data.len() as u32).await;
        for &chunk in order {
            let start = chunk as usize * 256;
            let end = (start + 256).min(data.len());
            self.framed
                .feed(Packet::UploadChunkRequest {
                    transaction,
                    chunk,
                    data: Bytes::copy_from_slice(&data[start..end]),
                })
                .await
                .unwrap();
        }
        self.framed.flush().await.unwrap();
        let mut acked = std::collections::BTreeSet::new();
        for _ in order {
            match self.recv().await {
                Packet::UploadChunkResponse {
                    transaction: t,
                    chunk,
                } => {
                    assert_eq!(t, transaction);
                    acked.insert(chunk);
                }
                p => panic!("expected a chunk ack, got {p:?}"),
            }
        }
        assert_eq!(acked.len(), order.len());
        file
    }

    /// Asks to upload `size` bytes as `name`; returns the file number and
    /// the transaction.
    pub async fn start_upload(&mut self, name: &str, size: u32) -> (u64, u64) {
        let session = self.session;
        self.send(Packet::FileUploadRequest {
            session,
            size,
            name: name.into(),
        })
        .await;
        match self.recv().await {
            Packet::FileUploadResponse { file, transaction } => (file, transaction),
            p => panic!("upload refused: {p:?}"),
        }
    }

    /// Sends chunk `chunk` of `data` (256 bytes a chunk) and expects its
    /// answer.
    pub async fn send_chunk(&mut self, transaction: u64, chunk: u32, data: &[u8]) {
        let start = chunk as usize * 256;
        let end = (start + 256).min(data.len());
        self.send(Packet::UploadChunkRequest {
            transaction,
            chunk,
            data: Bytes::copy_from_slice(&data[start..end]),
        })
        .await;
        match self.recv().await {
            Packet::UploadChunkResponse { chunk: c, .. } if c == chunk => {}
            p => panic!("expected chunk {chunk}'s answer, got {p:?}"),
        }
    }

    pub async fn upload(&mut self, name: &str, data: &[u8]) -> u64 {
        let order: Vec<u32> = (0..(data.len() as u32).div_ceil(256)).collect();
        self.upload_in_order(name, data, &order).await
    }

    /// Downloads a file with every chunk request pipelined.
    pub async fn download(&mut self, file: u64) -> Vec<u8> {
        let session = self.session;
        self.send(Packet::FileDataRequest { session, file }).await;
        let size = match self.recv().await {
            Packet::FileDataResponse { file: f, size, .. } => {
                assert_eq!(f, file);
                size
            }
            p => panic!("file data refused: {p:?}"),
        };
        self.send(Packet::FileDownloadRequest { session, file })
            .await;
        let transaction = match self.recv().await {
            Packet::FileDownloadResponse {
                file: f,
                transaction,
            } => {
                assert_eq!(f, file);
                transaction
            }
            p => panic!("download refused: {p:?}"),
        };
        let chunks = size.div_ceil(256);
        for chunk in 0..chunks {
            self.framed
                .feed(Packet::DownloadChunkRequest { transaction, chunk })
                .await
                .unwrap();
        }
        self.framed.flush().await.unwrap();
        let mut out = vec![0u8; size as usize];
        for expected in 0..chunks {
            match self.recv().await {
                Packet::DownloadChunkResponse {
                    transaction: t,
                    chunk,
                    data,
                } => {
                    assert_eq!((t, chunk), (transaction, expected));
                    let start = chunk as usize * 256;
                    out[start..start + data.len()].copy_from_slice(&data);
                }
                p => panic!("expected a chunk, got {p:?}"),
            }
        }
        out
    }
}

/// Starts the real `chat-server` binary on `dir`, on a free loopback port,
/// and returns it with the address it printed. It is killed when dropped.
pub async fn spawn_binary(dir: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr) {
    spawn_binary_with(dir, &[]).await
}

/// [`spawn_binary`] with more flags.
pub async fn spawn_binary_with(
    dir: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut args: Vec<std::ffi::OsString> = vec!["--data-dir".into(), dir.into()];
    args.extend(flags.iter().map(Into::into));
    spawn_server(&args, None).await
}

/// The real `chat-server` binary as a node of a cluster on `pg` and
/// `nats`, with file bodies in `files` and more `flags`.
pub async fn spawn_node(
    pg: &postgres::PgServer,
    nats: &nats::NatsServer,
    files: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    spawn_node_in(None, pg, nats, files, flags).await
}

/// [`spawn_node`] in working directory `cwd` (so a stray `./data` would
/// be seen there).
pub async fn spawn_node_in(
    cwd: Option<&std::path::Path>,
    pg: &postgres::PgServer,
    nats: &nats::NatsServer,
    files: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--postgres".into(),
        pg.url().into(),
        "--nats".into(),
        nats.url().into(),
        "--files-dir".into(),
        files.into(),
    ];
    args.extend(flags.iter().map(Into::into));
    spawn_server(&args, cwd).await
}

/// A node of a cluster on `pg` and `nats`, with file bodies in `files`,
/// in this process (its own hub, store connections and NATS connection,
/// as another process would have).
pub async fn node_in_process(
    pg: &postgres::PgServer,
    nats: &nats::NatsServer,
    files: &std::path::Path,
) -> TestServer {
    let (url, nats, files) = (pg.url(), nats.url(), files.to_path_buf());
    let start = TestServer::start_with(move |c| {
        c.postgres = Some(url);
        c.nats = Some(nats);
        c.files_dir = Some(files);
    });
    tokio::time::timeout(patience(), start)
        .await
        .expect("a server starts in time")
}

/// Two in-process nodes on a PostgreSQL and a nats-server of their own.
/// Fields drop in order: the nodes stop before their services.
pub struct TwoNodes {
    pub a: TestServer,
    pub b: TestServer,
    _files: TempDir,
    _nats: nats::NatsServer,
    /// For looking into the database, or changing it behind the nodes.
    pub pg: postgres::PgServer,
}

impl TwoNodes {
    /// Starts PostgreSQL, nats-server and two nodes on them.
    pub async fn start() -> Self {
        let pg = postgres::PgServer::start().await;
        let nats = nats::NatsServer::start().await;
        let files = tempfile::tempdir().unwrap();
        let a = node_in_process(&pg, &nats, files.path()).await;
        let b = node_in_process(&pg, &nats, files.path()).await;
        Self {
            a,
            b,
            _files: files,
            _nats: nats,
            pg,
        }
    }
}

/// Starts `chat-server --listen 127.0.0.1:0 ARGS` (in `cwd`, if given) and
/// reads the address it prints. Killed when dropped.
async fn spawn_server(
    args: &[std::ffi::OsString],
    cwd: Option<&std::path::Path>,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(patience(), lines.next_line())
        .await
        .expect("the server says where it listens in time")
        .unwrap()
        .expect("the server started");
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (child, addr)
}

/// Sends `sig` to a spawned server (SIGSTOP and SIGCONT pause a node).
pub fn signal(child: &tokio::process::Child, sig: rustix::process::Signal) {
    let pid = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        .expect("the process runs");
    rustix::process::kill_process(pid, sig).expect("the signal is sent");
}

/// Deterministic test bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 256) as u8).collect()
}

/// Kills `child` (SIGKILL) and waits for it to be gone.
pub async fn kill_9(child: &mut tokio::process::Child) {
    child.start_kill().expect("the process can be killed");
    tokio::time::timeout(patience(), child.wait())
        .await
        .expect("the process dies in time")
        .expect("waited for");
}
