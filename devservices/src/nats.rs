//! A real NATS server: `nats-server` on its own free loopback port, in a
//! process group of its own, killed when the value is dropped, and
//! startable again on the same port (a test of what a restart of NATS
//! does).
//!
//! The program is `CHAT_NATS_SERVER` if set, else `nats-server` on PATH or
//! in /usr/sbin (Debian's `nats-server` package, which `cargo xtask test`
//! installs).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{free_port, patience};

/// A running `nats-server`.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    /// The name it is started with, which its INFO line carries: what
    /// answers on the port is this server, not whoever took the port.
    name: String,
    /// Its log (stderr), for why it exited at start.
    log: tempfile::NamedTempFile,
    child: Option<Child>,
}

fn program() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAT_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is needed: none on PATH or in /usr/sbin. Install \
                 Debian's `nats-server` package (`cargo xtask test` does), or set \
                 CHAT_NATS_SERVER to the program."
            )
        })
}

impl NatsServer {
    /// A new server on a free port, accepting connections on return.
    pub async fn start() -> Self {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let mut nats = Self {
            bin: program(),
            port: free_port(),
            name: format!(
                "devservices-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
            log: tempfile::NamedTempFile::new().expect("a temp file"),
            child: None,
        };
        nats.launch(true).await;
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port after [`NatsServer::kill`].
    pub async fn start_again(&mut self) {
        self.launch(false).await;
    }

    /// Starts it and waits until it answers. The port was only free when
    /// it was picked: if another process took it meanwhile, a new server
    /// moves to a new port, and one started again (whose URL the servers
    /// hold) waits for its own.
    async fn launch(&mut self, may_move: bool) {
        assert!(self.child.is_none(), "nats-server runs already");
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let log_before = self.log.as_file().metadata().map_or(0, |m| m.len());
            let stderr = std::fs::OpenOptions::new()
                .append(true)
                .open(self.log.path())
                .expect("the log file");
            let child = Command::new(&self.bin)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-n", &self.name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
            self.child = Some(child);
            let exited = loop {
                if self.answers().await {
                    return;
                }
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    break status;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nats-server did not accept connections within {:?}",
                    patience()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            self.child = None;
            let log = std::fs::read(self.log.path()).unwrap_or_default();
            let this_start =
                String::from_utf8_lossy(log.get(log_before as usize..).unwrap_or_default())
                    .into_owned();
            assert!(
                this_start.contains("address already in use")
                    && tokio::time::Instant::now() < deadline,
                "nats-server exited at start ({exited}): {this_start}"
            );
            if may_move {
                self.port = free_port();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Whether this server (by its name in the INFO line it greets with)
    /// accepts connections on the port.
    async fn answers(&self) -> bool {
        use tokio::io::AsyncBufReadExt;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let greeting = async {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut line = String::new();
            tokio::io::BufReader::new(stream)
                .read_line(&mut line)
                .await
                .ok()?;
            Some(line)
        };
        let want = format!("\"server_name\":\"{}\"", self.name);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), greeting).await,
            Ok(Some(line)) if line.starts_with("INFO ") && line.contains(&want)
        )
    }

    /// Whether it has exited (or was killed).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Kills it (SIGKILL: connections drop at once) and waits for its end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
