//! Restarts and kill -9: nothing acknowledged is lost, nothing partial is
//! visible.

mod common;

use bytes::Bytes;
use common::{kill_9, pattern, spawn_binary, Peer, TestServer};
use proto::Packet;

#[tokio::test]
async fn a_restart_keeps_users_queued_messages_and_files() {
    let mut srv = TestServer::start().await;
    let b = srv.signed_in("bob").await;
    let bob = b.user;
    drop(b);
    let mut a = srv.signed_in("alice").await;
    let alice = a.user;
    a.message(bob, 1, "kept across restarts").await;
    let data = pattern(5000);
    let file = a.upload("kept.bin", &data).await;
    drop(a);
    srv.restart().await;
    let mut b = srv.signed_in("bob").await;
    assert_eq!(b.user, bob);
    let (from, _, body) = b.incoming().await;
    assert_eq!((from, &body[..]), (alice, &b"kept across restarts"[..]));
    assert_eq!(b.files().await, vec![file]);
    assert_eq!(b.download(file).await, data);
    // A message sent again after the restart is recognised, not stored twice.
    let mut a = srv.signed_in("alice").await;
    a.message(bob, 1, "kept across restarts").await;
    a.message(bob, 2, "new").await;
    let (_, _, body) = b.incoming().await;
    assert_eq!(&body[..], b"new");
}

#[tokio::test]
async fn kill_9_during_an_upload_loses_no_acknowledged_message_and_shows_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_binary(dir.path()).await;
    let mut bob = Peer::connect(addr).await;
    bob.sign_in("bob").await;
    let bob_user = bob.user;
    drop(bob);
    let mut a = Peer::connect(addr).await;
    a.sign_in("alice").await;
    for n in 1..=20 {
        a.message(bob_user, n, &format!("m{n}")).await;
    }
    let complete = a.upload("complete.bin", &pattern(1000)).await;
    let session = a.session;
    a.send(Packet::FileUploadRequest {
        session,
        size: 100_000,
        name: "partial.bin".into(),
    })
    .await;
    let Packet::FileUploadResponse { transaction, .. } = a.recv().await else {
        panic!()
    };
    for chunk in 0..50 {
        a.send(Packet::UploadChunkRequest {
            transaction,
            chunk,
            data: Bytes::from(vec![7; 256]),
        })
        .await;
    }
    assert!(matches!(a.recv().await, Packet::UploadChunkResponse { .. }));
    kill_9(&mut child).await;

    let (_child, addr) = spawn_binary(dir.path()).await;
    let mut b = Peer::connect(addr).await;
    b.sign_in("bob").await;
    for n in 1..=20 {
        let (_, _, body) = b.incoming().await;
        assert_eq!(body, Bytes::from(format!("m{n}")));
    }
    assert_eq!(b.files().await, vec![complete]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers, vec![complete.to_string()]);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.sync = "normal".into();
    let first = server::start(config.clone()).await.unwrap();
    let refused = server::start(config.clone()).await.unwrap_err();
    assert!(
        refused.to_string().contains("another chat server is using"),
        "{refused}"
    );
    // Once the first has stopped, the directory is free.
    first.shutdown().await;
    let again = server::start(config).await.unwrap();
    again.shutdown().await;
}

#[tokio::test]
async fn a_lock_let_go_of_moments_later_does_not_refuse_the_start() {
    // As a child forked by this process holds the old server's lock until
    // it execs: the start waits out the moment instead of refusing.
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.sync = "normal".into();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.path().join("server.lock"))
        .unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let letting_go = std::thread::spawn(move || {
        // Let go as soon as the start has begun.
        let _ = rx.blocking_recv();
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
    });
    let start = server::start(config);
    let _ = tx.send(());
    let running = tokio::time::timeout(std::time::Duration::from_secs(10), start)
        .await
        .expect("started in time")
        .expect("the lock was let go of");
    running.shutdown().await;
    letting_go.join().unwrap();
}
