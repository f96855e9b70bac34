//! Sign-in, session checks, keepalive, expiry and resume, over real TCP.

mod common;

use common::TestServer;
use proto::{ErrorCode, Packet};

#[tokio::test]
async fn sign_in_returns_a_cookie_and_a_name_keeps_its_user_number() {
    let srv = TestServer::start().await;
    let a = srv.signed_in("alice").await;
    let first = (a.user, a.session);
    drop(a);
    // A session whose client left is replaced by a new sign-in.
    let b = srv.signed_in("alice").await;
    assert_eq!(b.user, first.0);
    assert_ne!(b.session, first.1, "session numbers are never reused");
    let c = srv.signed_in("bob").await;
    assert_ne!(c.user, b.user);
}

#[tokio::test]
async fn a_name_with_a_live_connection_is_in_use() {
    let srv = TestServer::start().await;
    let _a = srv.signed_in("alice").await;
    let mut b = srv.peer().await;
    b.send(Packet::SessionRequest {
        name: "alice".into(),
    })
    .await;
    let (code, t, _, _) = b.recv_error().await;
    assert_eq!((code, t), (ErrorCode::NameInUse, 1));
    // The connection stays usable.
    b.sign_in("bob").await;
}

#[tokio::test]
async fn invalid_names_are_refused_with_a_reason() {
    let srv = TestServer::start().await;
    let mut p = srv.peer().await;
    for name in ["", "tab\there", &"x".repeat(65)] {
        p.send(Packet::SessionRequest { name: name.into() }).await;
        let (code, _, _, text) = p.recv_error().await;
        assert_eq!(code, ErrorCode::InvalidName, "{name:?}");
        assert!(text.contains("invalid user name"), "{text}");
    }
    p.sign_in(&"y".repeat(64)).await;
}

#[tokio::test]
async fn requests_need_this_connections_session() {
    let srv = TestServer::start().await;
    let mut anon = srv.peer().await;
    anon.send(Packet::UsersRequest { session: 1 }).await;
    assert_eq!(anon.recv_error().await.0, ErrorCode::BadSession);

    let mut a = srv.signed_in("alice").await;
    let b = srv.signed_in("bob").await;
    a.send(Packet::UsersRequest { session: b.session }).await;
    assert_eq!(a.recv_error().await.0, ErrorCode::BadSession);
    a.send(Packet::IncomingMessageAck { message: 1 }).await;
    // Acks are not answered; the connection still works.
    assert_eq!(a.users().await.len(), 2);
    anon.send(Packet::IncomingMessageAck { message: 1 }).await;
    assert_eq!(anon.recv_error().await.0, ErrorCode::BadSession);
}

#[tokio::test]
async fn a_second_sign_in_and_server_packets_are_unexpected() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    a.send(Packet::SessionRequest {
        name: "again".into(),
    })
    .await;
    assert_eq!(a.recv_error().await.0, ErrorCode::UnexpectedPacket);
    assert_eq!(a.users().await, vec![a.user]);
    // A packet type only servers send is refused from its header, and the
    // connection closes: its body is never read.
    a.send_raw(&[0, 6, 0xff, 0xff]).await;
    let (code, t, _, _) = a.recv_error().await;
    assert_eq!((code, t), (ErrorCode::UnexpectedPacket, 6));
    a.expect_closed().await;
}

#[tokio::test]
async fn preserve_refreshes_and_answers_with_the_cookie() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let session = a.session;
    a.send(Packet::SessionPreserve { session }).await;
    assert_eq!(
        a.recv().await,
        Packet::SessionCookie {
            user: a.user,
            session
        }
    );
}

#[tokio::test]
async fn a_silent_session_expires_and_its_connection_closes_with_a_reason() {
    let srv = TestServer::start_with(|c| c.session_timeout = 0.3).await;
    let mut a = srv.signed_in("alice").await;
    let (code, t, _, text) = a.recv_error().await;
    assert_eq!((code, t), (ErrorCode::BadSession, 0));
    assert!(text.contains("expired"), "{text}");
    a.expect_closed().await;
    // The session cannot be resumed; the name is free again.
    let mut b = srv.peer().await;
    b.send(Packet::SessionPreserve { session: a.session }).await;
    assert_eq!(b.recv_error().await.0, ErrorCode::BadSession);
    b.sign_in("alice").await;
    assert_eq!(b.user, a.user);
}

#[tokio::test]
async fn resume_moves_the_session_to_a_new_connection() {
    let srv = TestServer::start().await;
    let mut old = srv.signed_in("alice").await;
    let mut new = srv.peer().await;
    new.send(Packet::SessionPreserve {
        session: old.session,
    })
    .await;
    assert_eq!(
        new.recv().await,
        Packet::SessionCookie {
            user: old.user,
            session: old.session
        }
    );
    let (code, _, _, _) = old.recv_error().await;
    assert_eq!(code, ErrorCode::SessionMoved);
    old.expect_closed().await;
    new.session = old.session;
    new.user = old.user;
    assert_eq!(new.users().await, vec![old.user]);
}

#[tokio::test]
async fn resume_of_an_unknown_session_is_refused_and_the_connection_stays() {
    let srv = TestServer::start().await;
    let mut p = srv.peer().await;
    p.send(Packet::SessionPreserve { session: 12345 }).await;
    let (code, t, _, _) = p.recv_error().await;
    assert_eq!((code, t), (ErrorCode::BadSession, 4));
    p.sign_in("carol").await;
}

#[tokio::test]
async fn users_lists_who_is_online_and_user_data_any_known_user() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let b = srv.signed_in("bob").await;
    let mut users = a.users().await;
    users.sort_unstable();
    assert_eq!(users, vec![a.user, b.user]);
    let bob = b.user;
    drop(b);
    let session = a.session;
    // Bob's connection is gone: he is not listed, but still known.
    let me = a.user;
    tokio::time::timeout(common::patience(), async {
        while a.users().await != vec![me] {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("bob is still listed after his connection closed");
    a.send(Packet::UserDataRequest { session, user: bob }).await;
    assert_eq!(
        a.recv().await,
        Packet::UserDataResponse {
            user: bob,
            name: "bob".into()
        }
    );
    a.send(Packet::UserDataRequest { session, user: 999 }).await;
    let (code, t, subject, _) = a.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::UnknownUser, 7, 999));
}

#[tokio::test]
async fn a_refused_request_names_its_subject_so_the_client_can_match_it() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let wrong = a.session ^ 1;
    a.send(Packet::MessageRequest {
        session: wrong,
        to: a.user,
        message: 77,
        body: Default::default(),
    })
    .await;
    let (code, t, subject, _) = a.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::BadSession, 9, 77));
    a.send(Packet::FileDataRequest {
        session: wrong,
        file: 5,
    })
    .await;
    let (code, t, subject, _) = a.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::BadSession, 21, 5));
    let mut b = srv.peer().await;
    b.send(Packet::SessionRequest {
        name: "alice".into(),
    })
    .await;
    let (code, _, subject, _) = b.recv_error().await;
    assert_eq!((code, subject), (ErrorCode::NameInUse, 0));
}
