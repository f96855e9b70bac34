//! The whole cluster as processes, reached as browsers reach it: real
//! PostgreSQL and nats-server, three `chat-server` nodes and two
//! `chat-gateway`s, each gateway in front of all three nodes, and clients
//! speaking WebSocket to the gateways.
//!
//! A direct message, a broadcast and a file cross nodes and gateways; a
//! node is killed (kill -9) under a client, whose gateway takes the next
//! node for its new tunnel, where the client resumes its session and gets
//! what it had not acknowledged; `/healthz` reports the dead node.
//!
//! The node binary is the `chat-server` built beside this package's
//! `chat-gateway` (`cargo test --workspace`, as `cargo xtask test` runs,
//! builds both), or `CHAT_SERVER_BIN`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use common::{http_get, patience, WsPeer};
use devservices::nats::NatsServer;
use devservices::postgres::PgServer;
use proto::limits::BROADCAST_BIT;
use proto::Packet;

/// A process of the cluster, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], devservices::free_port()))
}

fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHAT_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_chat-gateway")).with_file_name("chat-server");
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build -p server) or set CHAT_SERVER_BIN",
        bin.display()
    );
    bin
}

/// Starts `cmd` (its output in `log`) and waits until `addr` takes
/// connections.
async fn spawn(mut cmd: Command, addr: SocketAddr, log: &std::path::Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + patience();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{cmd:?} exited at start ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cmd:?} did not listen in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Proc(child)
}

/// What runs; fields drop in order: gateways, nodes, NATS, PostgreSQL.
struct Cluster {
    gateways: Vec<(SocketAddr, Proc)>,
    nodes: Vec<(SocketAddr, Proc)>,
    _nats: NatsServer,
    pg: PgServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let pg = PgServer::start().await;
        let nats = NatsServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        let mut nodes = Vec::new();
        // One after another, so that node i has the i-th number in the
        // `nodes` table.
        for n in 0..3 {
            let addr = free_addr();
            let mut cmd = Command::new(server_bin());
            cmd.arg("--listen")
                .arg(addr.to_string())
                .args(["--postgres", &pg.url(), "--nats", &nats.url()])
                .arg("--files-dir")
                .arg(&files)
                .arg("--data-dir")
                .arg(dir.path().join(format!("node{n}")))
                .args(["--sync", "normal"]);
            let log = dir.path().join(format!("node{n}.log"));
            nodes.push((addr, spawn(cmd, addr, &log).await));
        }
        let servers: Vec<String> = nodes.iter().map(|(a, _)| a.to_string()).collect();
        let mut gateways = Vec::new();
        for g in 0..2 {
            let addr = free_addr();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-gateway"));
            cmd.arg("--listen")
                .arg(addr.to_string())
                .arg("--server")
                .arg(servers.join(","));
            let log = dir.path().join(format!("gateway{g}.log"));
            gateways.push((addr, spawn(cmd, addr, &log).await));
        }
        Self {
            gateways,
            nodes,
            _nats: nats,
            pg,
            _dir: dir,
        }
    }

    fn ws_url(&self, gateway: usize) -> String {
        format!("ws://{}/ws", self.gateways[gateway].0)
    }

    async fn signed_in(&self, gateway: usize, name: &str) -> WsPeer {
        let mut peer = WsPeer::connect(&self.ws_url(gateway), None).await.unwrap();
        peer.sign_in(name).await;
        peer
    }

    /// Which node (0, 1 or 2) holds `user`'s session, by the cluster's
    /// `owners` table.
    async fn node_of(&self, user: u64) -> usize {
        let id: i64 = self
            .pg
            .client()
            .await
            .query_one(
                "SELECT node FROM owners WHERE user_id = $1",
                &[&(user as i64)],
            )
            .await
            .unwrap()
            .get(0);
        let ids: Vec<i64> = self
            .pg
            .client()
            .await
            .query("SELECT id FROM nodes ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.iter().position(|n| *n == id).unwrap()
    }

    /// `/healthz` of gateway `g`: status and body.
    async fn health(&self, g: usize) -> (u16, String) {
        let (status, _, body) = http_get(self.gateways[g].0, "/healthz", &[]).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn three_nodes_behind_two_gateways_behave_as_one_and_survive_a_node_killed() {
    let mut cluster = Cluster::start().await;
    for g in 0..2 {
        let (status, body) = cluster.health(g).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("ok"), "{body}");
    }
    // Tunnels of one gateway go to each node in turn, so these three land
    // on different nodes, whatever node each gateway starts at.
    let mut alice = cluster.signed_in(0, "alice").await;
    let mut bob = cluster.signed_in(1, "bob").await;
    let mut carol = cluster.signed_in(0, "carol").await;
    let (on_a, on_c) = (
        cluster.node_of(alice.user).await,
        cluster.node_of(carol.user).await,
    );
    assert_ne!(
        on_a, on_c,
        "one gateway's tunnels are spread over the nodes"
    );
    let mut everyone = vec![alice.user, bob.user, carol.user];
    everyone.sort_unstable();
    for p in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(p.users().await, everyone);
    }

    // A direct message across gateways and nodes, left unacknowledged.
    bob.message(alice.user, 1, "not acknowledged").await;
    let (from, unacked, body) = alice.incoming().await;
    assert_eq!((from, &body[..]), (bob.user, &b"not acknowledged"[..]));
    // A broadcast reaches both others.
    let session = bob.session;
    bob.send(Packet::BroadcastRequest {
        session,
        message: 2,
        body: Bytes::from_static(b"hello all"),
    })
    .await;
    assert_eq!(bob.recv().await, Packet::BroadcastResponse { message: 2 });
    for p in [&mut alice, &mut carol] {
        let (from, n, body) = p.incoming().await;
        assert_eq!((from, &body[..]), (bob.user, &b"hello all"[..]));
        assert_ne!(n & BROADCAST_BIT, 0);
        p.ack(n).await;
    }
    // A file up through one node, down through another (alice's node is
    // not carol's) and through the other gateway.
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let file = carol.upload("notes.bin", &data).await;
    assert_eq!(alice.download(file, data.len()).await, data);
    assert_eq!(bob.download(file, data.len()).await, data);

    // Alice's node is killed under her.
    let killed = cluster.node_of(alice.user).await;
    let proc = &mut cluster.nodes[killed].1;
    proc.0.kill().unwrap();
    proc.0.wait().unwrap();
    // The tunnel ends (close_frame fails the test if it does not).
    alice.close_frame().await;
    let dead = cluster.nodes[killed].0;
    let (status, body) = cluster.health(0).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("degraded: 2 of 3 nodes up"), "{body}");
    assert!(
        body.contains(&format!("node {dead}: unreachable")),
        "{body}"
    );

    // She connects again through the same gateway, which passes over the
    // dead node, and resumes: the unacknowledged message comes again.
    let mut again = WsPeer::connect(&cluster.ws_url(0), None).await.unwrap();
    again
        .send(Packet::SessionPreserve {
            session: alice.session,
        })
        .await;
    assert_eq!(
        again.recv().await,
        Packet::SessionCookie {
            user: alice.user,
            session: alice.session
        }
    );
    again.user = alice.user;
    again.session = alice.session;
    // The broadcast comes again too: the dead node cannot say that it was
    // acknowledged, so those kept since the session began are sent again
    // (the client core drops a number it has shown).
    let mut redelivered = vec![again.incoming().await, again.incoming().await];
    redelivered.sort_by_key(|(_, n, _)| *n & BROADCAST_BIT);
    let [(from, n, body), (bfrom, _, bbody)] = &redelivered[..] else {
        unreachable!()
    };
    assert_eq!(
        (*from, *n, &body[..]),
        (bob.user, unacked, &b"not acknowledged"[..])
    );
    assert_eq!((*bfrom, &bbody[..]), (bob.user, &b"hello all"[..]));
    for (_, n, _) in &redelivered {
        again.ack(*n).await;
    }
    assert_ne!(cluster.node_of(alice.user).await, killed);
    // And live again, from carol, whose node is not the dead one (bob's
    // may be).
    carol.message(alice.user, 3, "after").await;
    let (from, n, body) = again.incoming().await;
    assert_eq!((from, &body[..]), (carol.user, &b"after"[..]));
    again.ack(n).await;
    let online = again.users().await;
    assert!(
        online.contains(&alice.user) && online.contains(&carol.user),
        "{online:?}"
    );
}
