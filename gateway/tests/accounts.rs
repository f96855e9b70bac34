//! A protected name through the gateway's WebSocket: the same packets and
//! answers as over TCP.

mod common;

use common::TestGateway;
use proto::{ErrorCode, Packet};

#[tokio::test]
async fn a_name_is_claimed_refused_and_signed_in_through_the_gateway() {
    let gw = TestGateway::start_with(|c| {
        c.chat.argon2_memory_kib = 64;
        c.chat.argon2_iterations = 1;
    })
    .await;
    let mut a = gw.ws().await;
    a.send(Packet::AccountSignIn {
        name: "alice".into(),
        password: "correct horse".into(),
    })
    .await;
    let Packet::SessionCookie { user, .. } = a.recv().await else {
        panic!("the claim failed")
    };
    drop(a);
    let mut b = gw.ws().await;
    b.send(Packet::SessionRequest {
        name: "alice".into(),
    })
    .await;
    assert!(matches!(
        b.recv().await,
        Packet::Error {
            code: ErrorCode::NameProtected,
            ..
        }
    ));
    b.send(Packet::AccountSignIn {
        name: "alice".into(),
        password: "wrong horse".into(),
    })
    .await;
    assert!(matches!(
        b.recv().await,
        Packet::Error {
            code: ErrorCode::BadCredentials,
            ..
        }
    ));
    b.send(Packet::AccountSignIn {
        name: "alice".into(),
        password: "correct horse".into(),
    })
    .await;
    let Packet::SessionCookie { user: again, .. } = b.recv().await else {
        panic!("the right password was refused")
    };
    assert_eq!(again, user);
}
