//! `chat-server backup` under load and `chat-server restore`, with the real
//! binary over TCP: everything acknowledged before the backup began is in
//! the restored directory.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{kill_9, patience, pattern, spawn_binary, spawn_binary_with, Peer};
use futures_util::StreamExt;
use proto::Packet;

/// Bounds on the load, whatever the machine's speed: it stops at the
/// signal, and never runs past these counts.
const MAX_MESSAGES_PER_SENDER: u64 = 20_000;
const MAX_SIGN_INS: u64 = 5_000;
const MAX_UPLOADS: u64 = 500;

/// What the server has acknowledged so far, recorded as each answer
/// arrives.
#[derive(Debug, Default, Clone)]
struct Acked {
    /// Message bodies by recipient (bodies are unique).
    messages: BTreeMap<u64, BTreeSet<Bytes>>,
    /// User numbers by name.
    users: BTreeMap<String, u64>,
    /// Complete files and their bodies.
    files: BTreeMap<u64, Vec<u8>>,
    /// Messages acknowledged, in all.
    message_count: u64,
}

type Shared = Arc<Mutex<Acked>>;

fn record(acked: &Shared, f: impl FnOnce(&mut Acked)) {
    f(&mut acked.lock().unwrap());
}

async fn signed_in(addr: std::net::SocketAddr, name: &str, acked: &Shared) -> Peer {
    let mut p = Peer::connect(addr).await;
    p.sign_in(name).await;
    let user = p.user;
    record(acked, |a| {
        a.users.insert(name.to_owned(), user);
    });
    p
}

/// Runs `chat-server ARGS` to completion and fails the test if it fails.
async fn run_binary(args: &[&std::ffi::OsStr]) -> String {
    let out = tokio::time::timeout(
        patience(),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(args)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chat-server finished in time")
    .unwrap();
    assert!(
        out.status.success(),
        "chat-server {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_message_user_and_complete_file() {
    // A backstop for the awaits below that have no timeout of their own
    // (a send, a connect, a killed child's exit): the test never hangs.
    tokio::time::timeout(patience() * 10, backup_under_load())
        .await
        .expect("the whole test within ten times the patience");
}

async fn backup_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("live");
    // The senders go as fast as the server answers: no rate limit, and
    // room in the mailboxes for all they may send.
    let (mut live, addr) = spawn_binary_with(
        &data,
        &["--message-rate", "0", "--max-mailbox-messages", "40000"],
    )
    .await;
    let acked: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Recipients stay offline: what is sent to them stays queued, as
    // unread mail, and must come back from the backup.
    let mut recipients = Vec::new();
    for name in ["bob", "carol"] {
        recipients.push(signed_in(addr, name, &acked).await.user);
    }
    // A large complete file, so the backup has bodies to copy while the
    // load goes on, and a small one.
    let mut uploader = signed_in(addr, "uploader", &acked).await;
    for (name, len) in [("big.bin", 1 << 20), ("small.bin", 1000)] {
        let body = pattern(len);
        let file = uploader.upload(name, &body).await;
        record(&acked, |a| {
            a.files.insert(file, body);
        });
    }
    // An upload in progress across the backup: half its chunks sent, never
    // finished. It must not be restored as a file.
    let session = uploader.session;
    uploader
        .send(Packet::FileUploadRequest {
            session,
            size: 10_000,
            name: "unfinished.bin".into(),
        })
        .await;
    let (unfinished, transaction) = match uploader.recv().await {
        Packet::FileUploadResponse { file, transaction } => (file, transaction),
        p => panic!("upload refused: {p:?}"),
    };
    for chunk in 0..20 {
        uploader
            .send(Packet::UploadChunkRequest {
                transaction,
                chunk,
                data: Bytes::from(vec![9; 256]),
            })
            .await;
        assert!(matches!(
            uploader.recv().await,
            Packet::UploadChunkResponse { .. }
        ));
    }

    let mut load = tokio::task::JoinSet::new();
    for s in 0..2u64 {
        let (acked, stop, recipients) = (acked.clone(), stop.clone(), recipients.clone());
        load.spawn(async move {
            let mut p = signed_in(addr, &format!("sender{s}"), &acked).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_MESSAGES_PER_SENDER {
                n += 1;
                let to = recipients[(n % 2) as usize];
                let body = format!("from sender{s}, message {n}");
                p.message(to, n, &body).await;
                record(&acked, |a| {
                    a.messages.entry(to).or_default().insert(body.into());
                    a.message_count += 1;
                });
            }
        });
    }
    {
        let (acked, stop) = (acked.clone(), stop.clone());
        load.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_SIGN_INS {
                n += 1;
                drop(signed_in(addr, &format!("user{n}"), &acked).await);
            }
        });
    }
    {
        let (acked, stop) = (acked.clone(), stop.clone());
        load.spawn(async move {
            let mut p = signed_in(addr, "filer", &acked).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_UPLOADS {
                n += 1;
                let body = pattern(2000 + n as usize);
                let file = p.upload(&format!("f{n}"), &body).await;
                record(&acked, |a| {
                    a.files.insert(file, body);
                });
            }
        });
    }
    // The load is running once some of each kind is acknowledged.
    common::eventually("the load runs", || {
        let a = acked.lock().unwrap();
        a.message_count >= 400 && a.users.contains_key("user50") && a.files.len() >= 10
    })
    .await;

    let archive = dir.path().join("chat-backup.tar");
    let before = acked.lock().unwrap().clone();
    let printed = run_binary(&[
        os("backup"),
        os("--data-dir"),
        data.as_os_str(),
        os("--to"),
        archive.as_os_str(),
    ])
    .await;
    let during = acked.lock().unwrap().message_count - before.message_count;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(patience(), async {
        while let Some(task) = load.join_next().await {
            task.unwrap();
        }
    })
    .await
    .expect("the load stopped");
    eprintln!(
        "before the backup: {} messages, {} users, {} files; {during} messages acknowledged during it; {printed}",
        before.message_count,
        before.users.len(),
        before.files.len()
    );
    assert!(printed.contains("backed up"), "{printed}");
    assert!(
        during > 0,
        "the server acknowledged no message while the backup ran"
    );
    kill_9(&mut live).await;

    let restored = dir.path().join("restored");
    run_binary(&[
        os("restore"),
        os("--from"),
        archive.as_os_str(),
        os("--data-dir"),
        restored.as_os_str(),
    ])
    .await;
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    let (_restored_server, addr) = spawn_binary(&restored).await;

    // Every user, under its number.
    let mut checker = Peer::connect(addr).await;
    checker.sign_in("checker").await;
    let session = checker.session;
    for (name, &user) in &before.users {
        checker
            .send(Packet::UserDataRequest { session, user })
            .await;
        match checker.recv().await {
            Packet::UserDataResponse { user: u, name: n } => {
                assert_eq!((u, &n), (user, name), "user {user}")
            }
            p => panic!("user {user} ({name}) is missing: {p:?}"),
        }
    }
    // Every complete file, byte for byte; not the unfinished one.
    let listed: BTreeSet<u64> = checker.files().await.into_iter().collect();
    assert!(!listed.contains(&unfinished));
    for (file, body) in &before.files {
        assert!(listed.contains(file), "file {file} is missing");
        assert_eq!(&checker.download(*file).await, body, "file {file}");
    }
    // Every acknowledged message, as unread mail of its recipient.
    for (recipient, expected) in &before.messages {
        let name = if *recipient == recipients[0] {
            "bob"
        } else {
            "carol"
        };
        let mut r = Peer::connect(addr).await;
        r.sign_in(name).await;
        assert_eq!(r.user, *recipient);
        let mut missing = expected.clone();
        while !missing.is_empty() {
            match tokio::time::timeout(patience(), r.framed.next()).await {
                Ok(Some(Ok(Packet::IncomingMessage { message, body, .. }))) => {
                    missing.remove(&body);
                    r.ack(message).await;
                }
                other => panic!(
                    "{} acknowledged messages to {name} are missing, the first {:?}; got {other:?}",
                    missing.len(),
                    missing.first()
                ),
            }
        }
    }
    assert!(
        restored.join("files").read_dir().unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".part")),
        "no upload in progress comes back"
    );
    assert_eq!(
        count_dir(&restored.join("files")),
        listed.len(),
        "a body for each listed file, and nothing else"
    );
}

fn count_dir(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}
