//! A real PostgreSQL server: a fresh cluster (`initdb`) in a temporary
//! directory, on its own port and socket directory, stopped when the value
//! is dropped.
//!
//! PostgreSQL refuses to run as root; run as root (as CI does), the
//! cluster is made and started as the `postgres` user (`Command::uid`,
//! which keeps the real process id for signals). The binaries are found in
//! `CHAT_POSTGRES_BIN`, else in `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package, which `cargo xtask test` installs). The
//! postmaster runs in a process group of its own, so a Ctrl-C meant for
//! `cargo xtask cluster` does not stop it before the nodes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{free_port, patience, signal};

/// A running PostgreSQL, trusting the user `chat` on 127.0.0.1.
pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    /// The postmaster while it runs.
    child: Option<Child>,
    owner: Option<(u32, u32)>,
    durable: bool,
}

/// Where PostgreSQL's programs are, or a failure that says what to do.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHAT_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL (15 or later) is needed: none in /usr/lib/postgresql/*/bin. \
             Install Debian's `postgresql` package (`cargo xtask test` does), or set \
             CHAT_POSTGRES_BIN to the directory holding `initdb` and `postgres`."
        )
    })
}

/// The `postgres` user's uid and gid, when we are root and must switch.
fn owner() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd is readable");
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).expect(
        "running as root, PostgreSQL needs the `postgres` user (Debian's package makes it)",
    );
    let fields: Vec<&str> = line.split(':').collect();
    let id = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .expect("a passwd entry")
    };
    Some((id(2), id(3)))
}

/// How one start of the postmaster went.
enum Launch {
    Up,
    PortTaken,
}

impl PgServer {
    /// A new cluster, started with `fsync = off`: tests check semantics,
    /// not the disk, and each makes its own cluster.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A new cluster whose commits reach the disk, as in production (for
    /// measurements).
    pub async fn start_durable() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("chat-pg-")
            .tempdir()
            .expect("a temp dir");
        let owner = owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir");
        }
        let mut pg = Self {
            bin,
            dir,
            // Picked once initdb has run, so that it is taken soon after.
            port: 0,
            child: None,
            owner,
            durable,
        };
        let mut initdb = pg.command("initdb");
        initdb.args([
            "-D",
            "data",
            "-U",
            "chat",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if !durable {
            initdb.arg("--no-sync");
        }
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.port = free_port();
        pg.launch(true).await;
        pg
    }

    /// A command for one of PostgreSQL's programs, run in the temp dir, as
    /// the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Starts it again after [`PgServer::stop`], on the same cluster and
    /// port, and waits until it takes connections.
    pub async fn start_again(&mut self) {
        self.launch(false).await;
    }

    /// Starts the postmaster on the cluster and waits until it takes
    /// connections. The port was only free when it was picked: if another
    /// process took it meanwhile, a new cluster moves to a new port, and
    /// one started again (whose URL the servers hold) waits for its own.
    async fn launch(&mut self, may_move: bool) {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            match self.attempt(deadline).await {
                Launch::Up => return,
                Launch::PortTaken if tokio::time::Instant::now() < deadline => {
                    if may_move {
                        self.port = free_port();
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Launch::PortTaken => panic!(
                    "PostgreSQL found port {} taken until {:?} had passed",
                    self.port,
                    patience()
                ),
            }
        }
    }

    /// One start of the postmaster, waited for until `deadline`.
    async fn attempt(&mut self, deadline: tokio::time::Instant) -> Launch {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the log file");
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(self.log_path(), Some(uid), Some(gid));
        }
        let mut postgres = self.command("postgres");
        let socket_dir = self.dir.path().to_string_lossy().into_owned();
        postgres
            .args([
                "-D",
                "data",
                "-p",
                &self.port.to_string(),
                "-k",
                &socket_dir,
            ])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("fsync={}", if self.durable { "on" } else { "off" }),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .process_group(0);
        let log_before = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        self.child = Some(postgres.spawn().expect("postgres starts"));
        // Ready once it answers on its Unix socket, which is in our own
        // directory and made after the TCP port was bound (a port another
        // process holds is fatal at start): so the port is ours too.
        let mut probe = tokio_postgres::Config::new();
        probe
            .host_path(self.dir.path())
            .port(self.port)
            .user("chat")
            .dbname("postgres");
        loop {
            let answered =
                tokio::time::timeout(Duration::from_secs(1), probe.connect(tokio_postgres::NoTls))
                    .await;
            if matches!(answered, Ok(Ok(_))) {
                return Launch::Up;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                let log = std::fs::read(self.log_path()).unwrap_or_default();
                let this_start = log.get(log_before as usize..).unwrap_or_default();
                if String::from_utf8_lossy(this_start).contains("Address already in use") {
                    self.child = None;
                    return Launch::PortTaken;
                }
            }
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "PostgreSQL did not start ({exited:?}); its log:\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The URL the engine connects with.
    pub fn url(&self) -> String {
        format!("postgres://chat@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id, for signals.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until node `id`'s lease has ended by PostgreSQL's clock, or,
    /// with `None`, every node's.
    pub async fn lease_ended(&self, id: Option<i64>) {
        let db = self.client().await;
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let live: i64 = db
                .query_one(
                    "SELECT count(*) FROM nodes
                     WHERE lease_until > now() AND ($1::int8 IS NULL OR id = $1)",
                    &[&id],
                )
                .await
                .expect("the nodes table reads")
                .get(0);
            if live == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a lease did not end within {:?}",
                patience()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no node holds a lease, by PostgreSQL's clock.
    pub async fn every_lease_ended(&self) {
        self.lease_ended(None).await
    }

    /// A connection of the test's own, for setting things up or looking.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio::time::timeout(
            patience(),
            tokio_postgres::connect(&self.url(), tokio_postgres::NoTls),
        )
        .await
        .expect("connecting in time")
        .expect("a connection");
        tokio::spawn(conn);
        client
    }

    /// Stops it (fast shutdown: sessions are cut, nothing committed is
    /// lost) and waits until it is gone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, rustix::process::Signal::INT);
        let deadline = tokio::time::Instant::now() + patience();
        while child.try_wait().ok().flatten().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "PostgreSQL did not stop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops and starts it again on the same cluster and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch(false).await;
    }

    /// The temp dir holding the cluster, its socket and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.log_path()
    }

    /// Whether the postmaster has exited (or was stopped).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Fast shutdown, so its shared memory and socket go too; killed if
        // it takes too long.
        signal(&child, rustix::process::Signal::INT);
        for _ in 0..500 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
