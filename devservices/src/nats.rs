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
use std::time::Duration;

use crate::{free_port, patience};

/// A running `nats-server`.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
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
        let mut nats = Self {
            bin: program(),
            port: free_port(),
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

    /// Starts it and waits until it accepts a connection. The port was only
    /// free when it was picked: if it exits at start (another process took
    /// the port meanwhile), a new server moves to a new port, and one
    /// started again (whose URL the servers hold) tries its own again.
    async fn launch(&mut self, may_move: bool) {
        assert!(self.child.is_none(), "nats-server runs already");
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let child = Command::new(&self.bin)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
            self.child = Some(child);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            let exited = loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
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
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server kept exiting at start: {exited}"
            );
            if may_move {
                self.port = free_port();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
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
