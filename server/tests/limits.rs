//! Long use and abuse (issue 11): every resource a peer can make grow has
//! a bound and an end. Each test reproduces one of the numbered
//! problems against a real server over TCP.

mod common;

use bytes::Bytes;
use common::{eventually, patience, pattern, Peer, TestServer};
use proto::{ErrorCode, Packet};

/// A server whose per-address limits apply to loopback too.
async fn limited(tweak: impl FnOnce(&mut server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.ip_limits_exempt.clear();
        tweak(c);
    })
    .await
}

fn count(dir: &std::path::Path, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join("chat.sqlite3")).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Sends FILE DOWNLOAD REQUEST and returns the answer.
async fn open_download(p: &mut Peer, file: u64) -> Packet {
    let session = p.session;
    p.send(Packet::FileDownloadRequest { session, file }).await;
    p.recv_skipping_incoming().await
}

// 1. Downloads end when their last chunk is sent; idle ones are closed.

#[tokio::test]
async fn a_session_downloads_far_more_files_than_it_may_have_open() {
    let srv = TestServer::start_with(|c| c.max_downloads = 4).await;
    let mut p = srv.signed_in("alice").await;
    let file = p.upload("small", &pattern(700)).await;
    for _ in 0..70 {
        assert_eq!(p.download(file).await, pattern(700));
    }
}

#[tokio::test]
async fn an_idle_download_is_closed_and_frees_its_slot() {
    let srv = TestServer::start_with(|c| {
        c.max_downloads = 1;
        c.transfer_idle_timeout = 0.3;
    })
    .await;
    let mut p = srv.signed_in("alice").await;
    let file = p.upload("f", &pattern(1000)).await;
    let Packet::FileDownloadResponse { transaction, .. } = open_download(&mut p, file).await else {
        panic!("no download")
    };
    let (code, _, _, text) = match open_download(&mut p, file).await {
        Packet::Error {
            code,
            request_type,
            subject,
            text,
        } => (code, request_type, subject, text),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, ErrorCode::RateLimited, "{text}");
    // Left idle, the first download is closed and the slot is free again.
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        match open_download(&mut p, file).await {
            Packet::FileDownloadResponse { .. } => break,
            Packet::Error {
                code: ErrorCode::RateLimited,
                ..
            } => {
                assert!(tokio::time::Instant::now() < deadline, "never freed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    p.send(Packet::DownloadChunkRequest {
        transaction,
        chunk: 0,
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::UnknownTransaction);
}

#[tokio::test]
async fn the_servers_open_transfer_cap_answers_busy() {
    let srv = TestServer::start_with(|c| {
        c.max_open_transfers = 2;
        c.session_timeout = 0.5;
    })
    .await;
    let mut a = srv.signed_in("alice").await;
    let file = a.upload("f", &pattern(1000)).await;
    for _ in 0..2 {
        assert!(matches!(
            open_download(&mut a, file).await,
            Packet::FileDownloadResponse { .. }
        ));
    }
    let mut b = srv.signed_in("bob").await;
    match open_download(&mut b, file).await {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    // Alice leaves: her transfers close when her session expires, and Bob
    // (who keeps his alive) gets one.
    drop(a);
    let session = b.session;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        b.send(Packet::SessionPreserve { session }).await;
        b.recv().await;
        match open_download(&mut b, file).await {
            Packet::FileDownloadResponse { .. } => break,
            Packet::Error {
                code: ErrorCode::Busy,
                ..
            } => {
                assert!(tokio::time::Instant::now() < deadline, "never freed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

// 2. Connections that never sign in are closed; per-address caps.

#[tokio::test]
async fn a_connection_that_never_signs_in_is_closed() {
    let srv = TestServer::start_with(|c| c.sign_in_timeout = 0.3).await;
    let mut silent = srv.peer().await;
    let (code, t, _, text) = silent.recv_error().await;
    assert_eq!((code, t), (ErrorCode::SignInTimeout, 0), "{text}");
    silent.expect_closed().await;
    // A connection that signs in in time stays.
    let mut a = srv.signed_in("alice").await;
    let session = a.session;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    a.send(Packet::SessionPreserve { session }).await;
    assert!(matches!(a.recv().await, Packet::SessionCookie { .. }));
}

#[tokio::test]
async fn one_address_may_hold_only_so_many_connections() {
    let srv = limited(|c| c.max_connections_per_ip = 2).await;
    let _a = srv.signed_in("alice").await;
    let _b = srv.peer().await;
    let mut third = srv.peer().await;
    let (code, _, _, text) = third.recv_error().await;
    assert_eq!(code, ErrorCode::TooManyConnections, "{text}");
    third.expect_closed().await;
}

#[tokio::test]
async fn sign_ins_from_one_address_are_rate_limited() {
    let srv = limited(|c| {
        c.sign_in_rate = 0.01;
        c.sign_in_burst = 2;
    })
    .await;
    let _a = srv.signed_in("alice").await;
    let _b = srv.signed_in("bob").await;
    let mut c = srv.peer().await;
    c.send(Packet::SessionRequest {
        name: "carol".into(),
    })
    .await;
    let (code, t, _, text) = c.recv_error().await;
    assert_eq!((code, t), (ErrorCode::RateLimited, 1), "{text}");
}

// 3. A mailbox is redelivered in pages, paced by acknowledgements.

#[tokio::test]
async fn a_large_mailbox_is_redelivered_in_windows_while_the_reader_runs() {
    let srv = TestServer::start_with(|c| {
        c.redelivery_window = 64;
        c.message_rate = 0;
    })
    .await;
    let bob = srv.signed_in("bob").await;
    let bob_user = bob.user;
    drop(bob);
    let mut alice = srv.signed_in("alice").await;
    let total = 1000u64;
    for n in 1..=total {
        let session = alice.session;
        alice
            .send(Packet::MessageRequest {
                session,
                to: bob_user,
                message: n,
                body: Bytes::from(format!("m{n}")),
            })
            .await;
    }
    for n in 1..=total {
        assert_eq!(alice.recv().await, Packet::MessageResponse { message: n });
    }
    // A client that does not acknowledge gets one window, no more: the
    // answer to its next request comes after exactly 64 messages.
    let mut lazy = srv.signed_in("bob").await;
    for _ in 0..64 {
        lazy.incoming().await;
    }
    let session = lazy.session;
    lazy.send(Packet::UsersRequest { session }).await;
    assert!(matches!(lazy.recv().await, Packet::UsersResponse { .. }));
    drop(lazy);
    // A client that acknowledges gets everything, in order, once, and its
    // keepalives are answered in the middle of the redelivery.
    let mut bob = Peer::connect(srv.addr).await;
    bob.sign_in("bob").await;
    let mut seen = Vec::new();
    let mut cookie_at = None;
    while seen.len() < total as usize || cookie_at.is_none() {
        match bob.recv().await {
            Packet::IncomingMessage { message, body, .. } => {
                seen.push(String::from_utf8(body.to_vec()).unwrap());
                bob.ack(message).await;
                if seen.len() == 500 {
                    let session = bob.session;
                    bob.send(Packet::SessionPreserve { session }).await;
                }
            }
            Packet::SessionCookie { .. } => cookie_at = Some(seen.len()),
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<String> = (1..=total).map(|n| format!("m{n}")).collect();
    assert_eq!(seen, expected);
    let at = cookie_at.unwrap_or(0);
    assert!(
        at < total as usize,
        "the keepalive was answered only after all {at}"
    );
}

#[tokio::test]
async fn a_full_mailbox_refuses_with_its_own_code_until_read() {
    let srv = TestServer::start_with(|c| c.max_mailbox_messages = 3).await;
    let bob = srv.signed_in("bob").await;
    let bob_user = bob.user;
    drop(bob);
    let mut alice = srv.signed_in("alice").await;
    for n in 1..=3 {
        alice.message(bob_user, n, "hi").await;
    }
    let session = alice.session;
    alice
        .send(Packet::MessageRequest {
            session,
            to: bob_user,
            message: 4,
            body: Bytes::from_static(b"one more"),
        })
        .await;
    let (code, t, subject, text) = alice.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::MailboxFull, 9, 4), "{text}");
    let mut bob = srv.signed_in("bob").await;
    for _ in 0..3 {
        let (_, number, _) = bob.incoming().await;
        bob.ack(number).await;
    }
    // Acknowledgements commit with the next batch: the resend gets through.
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        alice
            .send(Packet::MessageRequest {
                session,
                to: bob_user,
                message: 4,
                body: Bytes::from_static(b"one more"),
            })
            .await;
        match alice.recv().await {
            Packet::MessageResponse { message: 4 } => break,
            Packet::Error {
                code: ErrorCode::MailboxFull,
                ..
            } => assert!(tokio::time::Instant::now() < deadline),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&bob.incoming().await.2[..], b"one more");
}

// 4. Storage: reservations per user, a minimum charge, idle uploads.

#[tokio::test]
async fn one_user_cannot_reserve_the_quota_without_sending() {
    let srv = TestServer::start().await;
    let mut mallory = srv.signed_in("mallory").await;
    let session = mallory.session;
    let mut refused = None;
    for i in 0..20 {
        mallory
            .send(Packet::FileUploadRequest {
                session,
                size: 1 << 30,
                name: format!("big{i}"),
            })
            .await;
        if let Packet::Error { code, text, .. } = mallory.recv().await {
            refused = Some((i, code, text));
            break;
        }
    }
    let (i, code, text) = refused.expect("some upload refused");
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("reserve"), "{text}");
    assert!(i <= 4, "{i} gigabyte uploads reserved");
    let mut alice = srv.signed_in("alice").await;
    let file = alice.upload("tiny", b"hello").await;
    assert_eq!(alice.download(file).await, b"hello");
}

#[tokio::test]
async fn empty_files_are_charged_the_minimum_and_counted() {
    let srv = TestServer::start_with(|c| {
        c.storage_quota = 3 * 4096;
        c.max_user_files = 10;
    })
    .await;
    let mut p = srv.signed_in("alice").await;
    for i in 0..3 {
        p.upload(&format!("empty{i}"), b"").await;
    }
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 0,
        name: "one too many".into(),
    })
    .await;
    let (code, _, _, text) = p.recv_error().await;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("quota"), "{text}");
}

#[tokio::test]
async fn a_user_may_have_only_so_many_files() {
    let srv = TestServer::start_with(|c| c.max_user_files = 2).await;
    let mut p = srv.signed_in("alice").await;
    p.upload("a", b"1").await;
    p.upload("b", b"2").await;
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 1,
        name: "c".into(),
    })
    .await;
    let (code, _, _, text) = p.recv_error().await;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("files"), "{text}");
    // Another user is not affected.
    let mut b = srv.signed_in("bob").await;
    b.upload("c", b"3").await;
}

#[tokio::test]
async fn an_idle_upload_is_discarded_and_its_reservation_returned() {
    let srv = TestServer::start_with(|c| {
        c.transfer_idle_timeout = 0.3;
        c.max_user_reserved = 10_000;
    })
    .await;
    let mut p = srv.signed_in("alice").await;
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 9000,
        name: "abandoned".into(),
    })
    .await;
    let Packet::FileUploadResponse { file, transaction } = p.recv().await else {
        panic!()
    };
    let part = srv.dir.path().join("files").join(format!("{file}.part"));
    assert!(part.exists());
    eventually("the idle upload's body is removed", || !part.exists()).await;
    p.send(Packet::UploadChunkRequest {
        transaction,
        chunk: 0,
        data: Bytes::from(vec![0; 256]),
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::UnknownTransaction);
    // The reservation came back: the same size is accepted again.
    p.upload("again", &pattern(9000)).await;
}

// 5. The database does not only grow.

#[tokio::test]
async fn broadcast_bodies_are_not_kept_and_old_records_are_pruned() {
    let srv = TestServer::start_with(|c| {
        c.session_record_days = 1.0 / 86_400.0;
        c.mail_expiry_days = 1.0 / 86_400.0;
    })
    .await;
    let dir = srv.dir.path().to_path_buf();
    let bob = srv.signed_in("bob").await;
    let bob_user = bob.user;
    drop(bob);
    let mut alice = srv.signed_in("alice").await;
    let session = alice.session;
    alice
        .send(Packet::BroadcastRequest {
            session,
            message: 1,
            body: Bytes::from_static(b"to all"),
        })
        .await;
    assert_eq!(alice.recv().await, Packet::BroadcastResponse { message: 1 });
    alice.message(bob_user, 2, "for later").await;
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'broadcasts'"
        ),
        0
    );
    eventually("session records older than a second are pruned", || {
        count(&dir, "SELECT COUNT(*) FROM sessions") == 0
    })
    .await;
    eventually("mail older than a second is pruned", || {
        count(&dir, "SELECT COUNT(*) FROM queued") == 0
    })
    .await;
    // The live session is untouched by the pruning of its record.
    assert_eq!(alice.users().await, vec![alice.user]);
}

#[tokio::test]
async fn below_the_free_disk_floor_writes_are_refused_and_nothing_is_written() {
    let srv = TestServer::start_with(|c| c.min_free_disk = u64::MAX / 2).await;
    let mut alice = srv.signed_in("alice").await;
    let session = alice.session;
    alice
        .send(Packet::MessageRequest {
            session,
            to: alice.user,
            message: 1,
            body: Bytes::from_static(b"note"),
        })
        .await;
    let (code, t, subject, text) = alice.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::InsufficientStorage, 9, 1));
    assert!(text.contains("disk"), "{text}");
    alice
        .send(Packet::FileUploadRequest {
            session,
            size: 10,
            name: "f".into(),
        })
        .await;
    assert_eq!(alice.recv_error().await.0, ErrorCode::InsufficientStorage);
    let dir = srv.dir.path();
    assert_eq!(count(dir, "SELECT COUNT(*) FROM queued"), 0);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM files"), 0);
}

// 9. Memory bounds for the whole server, not only per connection.

#[tokio::test]
async fn the_servers_outbox_budget_cuts_off_readers_with_a_backlog() {
    let srv = TestServer::start_with(|c| {
        c.max_total_queued_bytes = 256 * 1024;
        c.max_queued_bytes = 64 << 20;
        c.message_rate = 0;
    })
    .await;
    // Two clients that never read their sockets.
    let mut stalled = Vec::new();
    for name in ["s1", "s2"] {
        stalled.push(srv.signed_in(name).await);
    }
    let mut reader = srv.signed_in("reader").await;
    let mut sender = srv.signed_in("sender").await;
    let session = sender.session;
    let body = Bytes::from(vec![b'x'; 60_000]);
    let mut cut = 0;
    for n in 1..=400u64 {
        sender
            .send(Packet::BroadcastRequest {
                session,
                message: n,
                body: body.clone(),
            })
            .await;
        assert_eq!(
            sender.recv_skipping_incoming().await,
            Packet::BroadcastResponse { message: n }
        );
        // The client that reads gets every broadcast.
        let (_, number, got) = reader.incoming().await;
        assert_eq!(got.len(), body.len());
        reader.ack(number).await;
        cut = 0;
        let users = reader.users().await;
        for s in &stalled {
            if !users.contains(&s.user) {
                cut += 1;
            }
        }
        if cut == stalled.len() {
            break;
        }
    }
    assert_eq!(cut, stalled.len(), "stalled readers were never cut off");
    for s in &mut stalled {
        // What they find when they finally read: broadcasts, then why.
        loop {
            match s.recv().await {
                Packet::IncomingMessage { .. } => continue,
                Packet::Error { code, .. } => {
                    assert_eq!(code, ErrorCode::SlowReader);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
