//! Direct messages and broadcasts: durable, acknowledged, redelivered.

mod common;

use bytes::Bytes;
use common::TestServer;
use proto::limits::BROADCAST_BIT;
use proto::{ErrorCode, Packet};

#[tokio::test]
async fn a_direct_message_is_acknowledged_then_delivered() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    a.message(b.user, 7, "hello bob").await;
    let (from, n, body) = b.incoming().await;
    assert_eq!((from, &body[..]), (a.user, &b"hello bob"[..]));
    assert_eq!(n & BROADCAST_BIT, 0);
    b.ack(n).await;
}

#[tokio::test]
async fn three_users_exchange_messages_in_order() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let mut c = srv.signed_in("carol").await;
    for i in 0..5u64 {
        a.message(b.user, i + 1, &format!("a→b {i}")).await;
        c.message(b.user, i + 100, &format!("c→b {i}")).await;
    }
    let mut from_a = Vec::new();
    let mut from_c = Vec::new();
    for _ in 0..10 {
        let (from, n, body) = b.incoming().await;
        b.ack(n).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        if from == a.user {
            from_a.push(text)
        } else {
            from_c.push(text)
        }
    }
    assert_eq!(
        from_a,
        (0..5).map(|i| format!("a→b {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        from_c,
        (0..5).map(|i| format!("c→b {i}")).collect::<Vec<_>>()
    );
    for i in 0..5u64 {
        b.message(c.user, i + 1, &format!("b→c {i}")).await;
    }
    let mut numbers = Vec::new();
    for i in 0..5 {
        let (from, n, body) = c.incoming().await;
        assert_eq!((from, body), (b.user, Bytes::from(format!("b→c {i}"))));
        numbers.push(n);
    }
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "delivery numbers grow"
    );
}

#[tokio::test]
async fn a_message_to_an_offline_user_arrives_on_their_next_session() {
    let srv = TestServer::start().await;
    let b = srv.signed_in("bob").await;
    let bob = b.user;
    drop(b);
    let mut a = srv.signed_in("alice").await;
    a.message(bob, 1, "first").await;
    a.message(bob, 2, "second").await;
    let mut b = srv.peer().await;
    b.sign_in("bob").await;
    let (_, n1, m1) = b.incoming().await;
    let (_, n2, m2) = b.incoming().await;
    assert_eq!((&m1[..], &m2[..]), (&b"first"[..], &b"second"[..]));
    b.ack(n1).await;
    b.ack(n2).await;
    // Acknowledged messages are not delivered again.
    let _ = b.users().await;
    drop(b);
    let mut b = srv.peer().await;
    b.sign_in("bob").await;
    assert_eq!(
        b.users().await.len(),
        2,
        "no redelivery before the users answer"
    );
}

#[tokio::test]
async fn resume_redelivers_what_was_not_acknowledged_in_order() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    a.message(b.user, 1, "one").await;
    a.message(b.user, 2, "two").await;
    let session = a.session;
    a.send(Packet::BroadcastRequest {
        session,
        message: 3,
        body: Bytes::from_static(b"all"),
    })
    .await;
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 3 });
    let (_, first, _) = b.incoming().await;
    b.ack(first).await;
    let _ = b.incoming().await;
    let _ = b.incoming().await;
    // Bob's network drops (after the server has read his ack): he resumes
    // on a new connection.
    let _ = b.users().await;
    let (user, session) = (b.user, b.session);
    drop(b);
    let mut b2 = srv.peer().await;
    b2.send(Packet::SessionPreserve { session }).await;
    assert_eq!(b2.recv().await, Packet::SessionCookie { user, session });
    let (_, _, m) = b2.incoming().await;
    assert_eq!(&m[..], b"two");
    let (from, n, m) = b2.incoming().await;
    assert_eq!((from, &m[..]), (a.user, &b"all"[..]));
    assert_ne!(n & BROADCAST_BIT, 0);
}

#[tokio::test]
async fn a_repeated_message_number_is_acknowledged_but_stored_once() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    a.message(b.user, 42, "once").await;
    a.message(b.user, 42, "once").await;
    a.message(b.user, 43, "next").await;
    let (_, _, m1) = b.incoming().await;
    let (_, _, m2) = b.incoming().await;
    assert_eq!((&m1[..], &m2[..]), (&b"once"[..], &b"next"[..]));
}

#[tokio::test]
async fn a_message_to_an_unknown_user_is_refused_with_its_number() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let session = a.session;
    a.send(Packet::MessageRequest {
        session,
        to: 999,
        message: 5,
        body: Bytes::new(),
    })
    .await;
    let (code, t, subject, _) = a.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::UnknownUser, 9, 5));
}

#[tokio::test]
async fn a_broadcast_reaches_everyone_online_but_the_sender() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let mut c = srv.signed_in("carol").await;
    let session = a.session;
    a.send(Packet::BroadcastRequest {
        session,
        message: 1,
        body: Bytes::from_static(b"hi all"),
    })
    .await;
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 1 });
    for p in [&mut b, &mut c] {
        let (from, n, body) = p.incoming().await;
        assert_eq!((from, &body[..]), (a.user, &b"hi all"[..]));
        assert_ne!(n & BROADCAST_BIT, 0);
        p.ack(n).await;
    }
    // The sender got nothing but the acknowledgement.
    assert_eq!(a.users().await.len(), 3);
}

#[tokio::test]
async fn sending_faster_than_the_rate_limit_is_refused() {
    use futures_util::SinkExt;
    let srv = TestServer::start_with(|c| {
        c.message_rate = 1;
        c.message_burst = 2;
    })
    .await;
    let mut a = srv.signed_in("alice").await;
    let me = a.user;
    let session = a.session;
    // In one write, so that no pause of a busy machine refills the bucket
    // between them.
    for message in 1..=3 {
        a.framed
            .feed(Packet::MessageRequest {
                session,
                to: me,
                message,
                body: Bytes::new(),
            })
            .await
            .unwrap();
    }
    a.framed.flush().await.unwrap();
    let (code, t, subject, _) = loop {
        match a.recv().await {
            Packet::Error {
                request_type,
                code,
                subject,
                text,
            } => break (code, request_type, subject, text),
            _ => continue,
        }
    };
    assert_eq!((code, t, subject), (ErrorCode::RateLimited, 9, 3));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_buffered() {
    let srv = TestServer::start_with(|c| {
        c.max_queued_bytes = 64 * 1024;
        c.message_rate = 0;
        // Not what cuts the sink off (its full outbox does), but what paces
        // the redelivery below: generous, so a busy machine's pause in
        // reading is not taken for a reader that stopped.
        c.write_timeout = 1.0;
    })
    .await;
    let mut sender = srv.signed_in("sender").await;
    let sink = srv.signed_in("sink").await;
    let to = sink.user;
    let body = "x".repeat(60_000);
    // The sink never reads. The kernel buffers fill, then the outbox, then
    // the server cuts the sink off; the sender is never slowed down.
    let mut n = 0;
    loop {
        n += 1;
        sender.message(to, n, &body).await;
        if sender.users().await == vec![sender.user] {
            break;
        }
        assert!(n < 2000, "the sink was never disconnected");
    }
    // Everything it missed is still queued durably for its next session,
    // and comes back paced to the reader: far more than the 64 KiB the
    // connection may have waiting, without being cut off.
    drop(sink.framed);
    let mut again = srv.peer().await;
    again.sign_in("sink").await;
    for _ in 0..n {
        let (_, number, missed) = again.incoming().await;
        assert_eq!(missed.len(), body.len());
        again.ack(number).await;
    }
}

#[tokio::test]
async fn a_burst_of_pipelined_requests_is_answered_in_order() {
    use futures_util::SinkExt;
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let session = a.session;
    // One write: messages, a request with a wrong session in the middle,
    // a broadcast and a users request, all answered in request order.
    for n in 1..=50u64 {
        let body = Bytes::from(format!("m{n}"));
        a.framed
            .feed(Packet::MessageRequest {
                session,
                to: b.user,
                message: n,
                body,
            })
            .await
            .unwrap();
    }
    a.framed
        .feed(Packet::MessageRequest {
            session: 1,
            to: b.user,
            message: 51,
            body: Bytes::new(),
        })
        .await
        .unwrap();
    a.framed
        .feed(Packet::BroadcastRequest {
            session,
            message: 52,
            body: Bytes::from_static(b"all"),
        })
        .await
        .unwrap();
    a.framed
        .feed(Packet::UsersRequest { session })
        .await
        .unwrap();
    a.framed.flush().await.unwrap();
    for n in 1..=50u64 {
        assert_eq!(a.recv().await, Packet::MessageResponse { message: n });
    }
    assert_eq!(a.recv_error().await.0, ErrorCode::BadSession);
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 52 });
    assert!(matches!(a.recv().await, Packet::UsersResponse { .. }));
    for n in 1..=50u64 {
        let (_, _, body) = b.incoming().await;
        assert_eq!(body, Bytes::from(format!("m{n}")));
    }
    let (_, number, body) = b.incoming().await;
    assert_eq!(
        (&body[..], number & BROADCAST_BIT != 0),
        (&b"all"[..], true)
    );
}

#[tokio::test]
async fn pipelined_broadcasts_keep_their_order_around_a_direct_message() {
    use futures_util::SinkExt;
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let mut c = srv.signed_in("carol").await;
    let session = a.session;
    // One write: two broadcasts, a message to Bob, a third broadcast. The
    // server fans the broadcasts out together, but never past the message.
    for (n, to) in [(1, None), (2, None), (3, Some(b.user)), (4, None)] {
        let body = Bytes::from(format!("m{n}"));
        let packet = match to {
            Some(to) => Packet::MessageRequest {
                session,
                to,
                message: n,
                body,
            },
            None => Packet::BroadcastRequest {
                session,
                message: n,
                body,
            },
        };
        a.framed.feed(packet).await.unwrap();
    }
    a.framed.flush().await.unwrap();
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 1 });
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 2 });
    assert_eq!(a.recv().await, Packet::MessageResponse { message: 3 });
    assert_eq!(a.recv().await, Packet::BroadcastResponse { message: 4 });
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let (_, n, body) = b.incoming().await;
        bodies.push(body);
        b.ack(n).await;
    }
    assert_eq!(
        bodies,
        [b"m1", b"m2", b"m3", b"m4"].map(|b| Bytes::from_static(b))
    );
    // Carol acknowledges only the first, then her connection drops: the
    // other two come back, in order, when she resumes.
    let (_, first, body) = c.incoming().await;
    assert_eq!(&body[..], b"m1");
    c.ack(first).await;
    let (_, _, body) = c.incoming().await;
    assert_eq!(&body[..], b"m2");
    let (_, _, body) = c.incoming().await;
    assert_eq!(&body[..], b"m4");
    let _ = c.users().await;
    let (user, session) = (c.user, c.session);
    drop(c);
    let mut c2 = srv.peer().await;
    c2.send(Packet::SessionPreserve { session }).await;
    assert_eq!(c2.recv().await, Packet::SessionCookie { user, session });
    for expected in ["m2", "m4"] {
        let (_, _, body) = c2.incoming().await;
        assert_eq!(&body[..], expected.as_bytes());
    }
}

#[tokio::test]
async fn a_client_that_reads_none_of_its_redelivery_is_cut_off() {
    let mut srv = TestServer::start_with(|c| {
        c.max_queued_bytes = 64 * 1024;
        c.message_rate = 0;
        c.write_timeout = 0.2;
    })
    .await;
    let mut sender = srv.signed_in("sender").await;
    let sink = srv.signed_in("sink").await;
    let to = sink.user;
    drop(sink);
    // Far more than the socket buffers and the outbox hold together.
    let body = "x".repeat(60_000);
    for n in 1..=200 {
        sender.message(to, n, &body).await;
    }
    // Signs in and never reads: redelivery waits for room, then gives up
    // after the write timeout instead of holding the connection forever.
    let mut stalled = srv.peer().await;
    stalled
        .send(Packet::SessionRequest {
            name: "sink".into(),
        })
        .await;
    let online = |users: Vec<u64>| users.contains(&to);
    let deadline = tokio::time::Instant::now() + common::patience();
    while !online(sender.users().await) {
        assert!(tokio::time::Instant::now() < deadline, "never signed in");
    }
    while online(sender.users().await) {
        assert!(tokio::time::Instant::now() < deadline, "never cut off");
    }
    // Nothing is left waiting: the server shuts down.
    let server = srv.server.take().unwrap();
    tokio::time::timeout(common::patience(), server.shutdown())
        .await
        .expect("the server shut down");
    drop(stalled);
}
