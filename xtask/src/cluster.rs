//! `cargo xtask cluster`: the multi-node mode on this machine. PostgreSQL,
//! nats-server, three chat-server nodes and two gateways, each in its own
//! temp directory on its own free loopback port, until Ctrl-C.
//!
//! `--check` starts the same, sends a direct message from a user on one
//! node to a user on another, asks each gateway's `/healthz`, and stops
//! (`cargo xtask test` runs it on the debug binaries its tests built).
//!
//! Every process runs in a process group of its own, so Ctrl-C reaches
//! only this program, which then stops them in order: gateways, nodes,
//! nats-server, PostgreSQL (fast shutdown), and removes the temp dirs.
//! PostgreSQL and nats-server are started as the tests start them
//! ([`devservices`]), PostgreSQL with durable commits as in production.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use devservices::nats::NatsServer;
use devservices::postgres::PgServer;
use tempfile::TempDir;

use crate::tools::{sh, Tools};

/// How long any one process gets to become ready.
const PATIENCE: Duration = Duration::from_secs(30);

/// `cargo xtask cluster [--check]`.
pub(crate) fn cluster(args: &[String]) -> Result<()> {
    let check = args.iter().any(|a| a == "--check");
    if let Some(other) = args.iter().find(|a| *a != "--check") {
        bail!("cargo xtask cluster: unknown argument {other} (only --check)");
    }
    let tools = Tools::ensure_cluster()?;
    sh(tools.cmd("cargo").args([
        "build",
        "--release",
        "--package",
        "server",
        "--package",
        "gateway",
        // The client too, to talk to the nodes (and the same feature set
        // as `chat bench`'s build, so one build serves both).
        "--package",
        "cli",
    ]))?;
    let bin = tools.root.join("target/release");
    if check {
        return self_check(&bin);
    }
    let cluster = Cluster::start(&bin)?;
    cluster.print();
    eprintln!(
        "xtask: the cluster runs (Ctrl-C stops it); try\n  target/release/chat --server {} --name bob listen\n  target/release/chat --server {} --name alice send bob hello",
        cluster.nodes[0].addr, cluster.nodes[1].addr
    );
    cluster.wait_for_ctrl_c()
}

/// Starts a cluster from the binaries in `bin`, checks a cross-node
/// direct message and the gateways' health, and stops it.
pub(crate) fn self_check(bin: &Path) -> Result<()> {
    let started = Instant::now();
    let cluster = Cluster::start(bin)?;
    cluster.print();
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    cross_node_dm(a, b).context("a direct message from node 1 to node 2")?;
    for gateway in &cluster.gateways {
        let (status, body) = http_get(gateway.addr, "/healthz")?;
        if status != 200 {
            bail!("gateway {} /healthz: {status}\n{body}", gateway.addr);
        }
    }
    drop(cluster);
    eprintln!(
        "xtask: cluster check passed in {:.1} s (PostgreSQL, NATS, 3 nodes, 2 gateways; a DM across nodes; /healthz)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A node or gateway process: stopped with SIGTERM when dropped.
struct Proc {
    name: String,
    child: Child,
    /// Its temp dir (cwd and log), removed after the process.
    dir: TempDir,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: TempDir) -> Result<Self> {
        let log = std::fs::File::create(dir.path().join("log"))?;
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing with the log if the process
    /// exits or time runs out.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready within {PATIENCE:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("xtask: {} did not stop in 10 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node or gateway: its process and addresses.
struct Member {
    addr: SocketAddr,
    metrics: SocketAddr,
    proc: Proc,
}

/// Everything that runs. Fields drop in order: gateways, nodes, NATS,
/// PostgreSQL, then the shared files directory.
struct Cluster {
    gateways: Vec<Member>,
    nodes: Vec<Member>,
    nats: NatsServer,
    postgres: PgServer,
    files: TempDir,
}

impl Cluster {
    fn start(bin: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let postgres = runtime.block_on(PgServer::start_durable());
        let nats = runtime.block_on(NatsServer::start());
        let (pg_url, nats_url) = (postgres.url(), nats.url());
        let files = temp("chat-files-")?;
        let mut nodes = Vec::new();
        for n in 1..=3 {
            let (addr, metrics) = (free_addr()?, free_addr()?);
            let mut cmd = Command::new(bin.join("chat-server"));
            cmd.arg("--listen")
                .arg(addr.to_string())
                .arg("--metrics-listen")
                .arg(metrics.to_string())
                .args(["--postgres", &pg_url, "--nats", &nats_url])
                .arg("--files-dir")
                .arg(files.path())
                .args(["--data-dir", "data"]);
            let mut proc = Proc::spawn(&format!("node {n}"), cmd, temp("chat-node-")?)?;
            proc.wait_ready(|| TcpStream::connect(addr).is_ok())?;
            nodes.push(Member {
                addr,
                metrics,
                proc,
            });
        }
        let servers: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let mut gateways = Vec::new();
        for g in 1..=2 {
            let (addr, metrics) = (free_addr()?, free_addr()?);
            let mut cmd = Command::new(bin.join("chat-gateway"));
            cmd.arg("--listen")
                .arg(addr.to_string())
                .arg("--metrics-listen")
                .arg(metrics.to_string())
                .arg("--server")
                .arg(servers.join(","));
            let mut proc = Proc::spawn(&format!("gateway {g}"), cmd, temp("chat-gateway-")?)?;
            proc.wait_ready(|| TcpStream::connect(addr).is_ok())?;
            gateways.push(Member {
                addr,
                metrics,
                proc,
            });
        }
        Ok(Self {
            gateways,
            nodes,
            nats,
            postgres,
            files,
        })
    }

    fn print(&self) {
        println!(
            "PostgreSQL  {}  (data and log in {})",
            self.postgres.url(),
            self.postgres.dir().display()
        );
        println!("NATS        {}", self.nats.url());
        println!("files       {}", self.files.path().display());
        for (i, n) in self.nodes.iter().enumerate() {
            println!(
                "node {}      chat tcp://{}  metrics http://{}/metrics  log {}",
                i + 1,
                n.addr,
                n.metrics,
                n.proc.dir.path().join("log").display()
            );
        }
        for (i, g) in self.gateways.iter().enumerate() {
            println!(
                "gateway {}   http://{}/  health http://{}/healthz  metrics http://{}/metrics",
                i + 1,
                g.addr,
                g.addr,
                g.metrics
            );
        }
    }

    /// Blocks until Ctrl-C (or until a process exits on its own), then
    /// stops everything by dropping it.
    fn wait_for_ctrl_c(mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let exited = runtime.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => return None,
                    _ = tick.tick() => {
                        if let Some(name) = self.exited() {
                            return Some(name);
                        }
                    }
                }
            }
        });
        eprintln!("xtask: stopping the cluster");
        match exited {
            None => Ok(()),
            Some(name) => bail!("{name} exited on its own; the cluster was stopped"),
        }
    }

    fn exited(&mut self) -> Option<String> {
        if self.nats.exited() {
            return Some("nats-server".into());
        }
        if self.postgres.exited() {
            return Some(format!(
                "PostgreSQL (log: {})",
                self.postgres.log().display()
            ));
        }
        let procs = self
            .gateways
            .iter_mut()
            .chain(self.nodes.iter_mut())
            .map(|m| &mut m.proc);
        for p in procs {
            if matches!(p.child.try_wait(), Ok(Some(_))) {
                return Some(format!(
                    "{} (log: {})",
                    p.name,
                    p.dir.path().join("log").display()
                ));
            }
        }
        None
    }
}

fn temp(prefix: &str) -> Result<TempDir> {
    Ok(tempfile::Builder::new().prefix(prefix).tempdir()?)
}

/// A loopback address with a port nobody listens on now.
fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], devservices::free_port())))
}

/// A minimal client of the chat protocol for the check: packets by hand,
/// as in docs/PROTOCOL.md (2-byte type, big-endian fields).
struct Raw(TcpStream);

impl Raw {
    fn connect(addr: SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(PATIENCE))?;
        Ok(Self(s))
    }

    fn u16(&mut self) -> Result<u16> {
        let mut b = [0; 2];
        self.0.read_exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0; 8];
        self.0.read_exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let len = self.u16()?;
        let mut b = vec![0; usize::from(len)];
        self.0.read_exact(&mut b)?;
        Ok(b)
    }

    /// SESSION REQUEST; returns (user, session) from the SESSION COOKIE.
    fn sign_in(&mut self, name: &str) -> Result<(u64, u64)> {
        let mut p = 1u16.to_be_bytes().to_vec();
        p.extend(u16::try_from(name.len())?.to_be_bytes());
        p.extend(name.as_bytes());
        self.0.write_all(&p)?;
        match self.u16()? {
            2 => Ok((self.u64()?, self.u64()?)),
            3 => {
                let (_, code, _) = (self.u16()?, self.u16()?, self.u64()?);
                let text = self.bytes()?;
                bail!(
                    "signing in {name}: ERROR {code} {}",
                    String::from_utf8_lossy(&text)
                )
            }
            t => bail!("signing in {name}: packet type {t}"),
        }
    }
}

/// Alice on `a` sends a DM to Bob on `b`; Bob must get it.
fn cross_node_dm(a: SocketAddr, b: SocketAddr) -> Result<()> {
    let mut alice = Raw::connect(a)?;
    let mut bob = Raw::connect(b)?;
    let suffix = std::process::id();
    let (_, alice_session) = alice.sign_in(&format!("alice{suffix}"))?;
    let (bob_user, _) = bob.sign_in(&format!("bob{suffix}"))?;
    let body = b"hello across nodes";
    let mut p = 9u16.to_be_bytes().to_vec();
    p.extend(alice_session.to_be_bytes());
    p.extend(bob_user.to_be_bytes());
    p.extend(1u64.to_be_bytes());
    p.extend(u16::try_from(body.len())?.to_be_bytes());
    p.extend(body);
    alice.0.write_all(&p)?;
    match alice.u16()? {
        10 => {
            let n = alice.u64()?;
            if n != 1 {
                bail!("MESSAGE RESPONSE for {n}, not 1");
            }
        }
        t => bail!("the sender got packet type {t}, not a MESSAGE RESPONSE"),
    }
    match bob.u16()? {
        13 => {
            let (_from, _number) = (bob.u64()?, bob.u64()?);
            let got = bob.bytes()?;
            if got != body {
                bail!("Bob got {:?}", String::from_utf8_lossy(&got));
            }
            Ok(())
        }
        t => bail!("the recipient got packet type {t}, not an INCOMING MESSAGE"),
    }
}

/// A plain HTTP/1.0 GET; returns the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(PATIENCE))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP response")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}
