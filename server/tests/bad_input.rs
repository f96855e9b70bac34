//! Undecodable input gets an ERROR and a closed connection; the server and
//! every other connection go on.

mod common;

use common::TestServer;
use proto::ErrorCode;

#[tokio::test]
async fn an_unknown_packet_type_is_reported_and_the_connection_closed() {
    let srv = TestServer::start().await;
    let mut bystander = srv.signed_in("bystander").await;
    let mut p = srv.signed_in("alice").await;
    p.send_raw(&[0x00, 0x63, 1, 2, 3]).await;
    let (code, t, _, text) = p.recv_error().await;
    assert_eq!((code, t), (ErrorCode::UnknownPacketType, 99));
    assert!(text.contains("99"), "{text}");
    p.expect_closed().await;
    assert_eq!(bystander.users().await, vec![bystander.user]);
}

#[tokio::test]
async fn invalid_utf8_in_a_name_is_malformed() {
    let srv = TestServer::start().await;
    let mut p = srv.peer().await;
    p.send_raw(&[0, 1, 0, 2, 0xff, 0xfe]).await;
    let (code, t, _, text) = p.recv_error().await;
    assert_eq!((code, t), (ErrorCode::Malformed, 1));
    assert!(text.contains("UTF-8"), "{text}");
    p.expect_closed().await;
}

#[tokio::test]
async fn an_oversized_chunk_length_is_malformed() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let mut bytes = vec![0, 25];
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&300u16.to_be_bytes());
    p.send_raw(&bytes).await;
    let (code, t, _, _) = p.recv_error().await;
    assert_eq!((code, t), (ErrorCode::Malformed, 25));
    p.expect_closed().await;
}

#[tokio::test]
async fn a_packet_cut_off_by_the_client_closing_loses_nothing_else() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let bob = b.user;
    a.message(bob, 1, "whole").await;
    // Half a packet, then the client goes away.
    a.send_raw(&[0, 9, 0, 0]).await;
    drop(a);
    let (_, n, body) = b.incoming().await;
    assert_eq!(&body[..], b"whole");
    b.ack(n).await;
    assert_eq!(b.users().await, vec![bob]);
}
