//! The decoder's refusals: each names the problem, none allocates on the
//! word of a length field.

use proto::{decode, DecodeError, Decoder, ErrorCode};

#[test]
fn unknown_types_are_named() {
    for t in [0u16, 30, 0xffff] {
        let bytes = t.to_be_bytes();
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType(t));
        assert_eq!(err.code(), ErrorCode::UnknownPacketType);
        assert!(err.to_string().contains(&t.to_string()));
    }
}

#[test]
fn invalid_utf8_names_are_refused() {
    let bytes = [0, 1, 0, 2, 0xc3, 0x28];
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::InvalidUtf8 {
            kind: 1,
            field: "name",
            ..
        }
    ));
    assert_eq!(err.code(), ErrorCode::Malformed);
    assert_eq!(err.request_type(), 1);
    assert!(err.to_string().contains("SESSION REQUEST"), "{err}");
}

#[test]
fn oversized_chunks_are_refused_before_their_bytes_arrive() {
    // UPLOAD CHUNK REQUEST declaring 257 bytes, with none of them present.
    let mut bytes = vec![0, 25];
    bytes.extend_from_slice(&9u64.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&257u16.to_be_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::ChunkTooLong {
            kind: 25,
            len: 257,
            ..
        })
    ));
}

#[test]
fn a_huge_length_with_few_bytes_waits_without_buffering_more() {
    let mut d = Decoder::new();
    // USERS RESPONSE claiming 65535 users (512 KiB), 3 bytes in hand.
    d.feed(&[0, 6, 0xff]);
    assert_eq!(d.next_packet(), Ok(None));
    d.feed(&[0xff, 0, 0]);
    assert_eq!(d.next_packet(), Ok(None));
    assert_eq!(d.buffered(), 6);
}

#[test]
fn a_server_only_type_from_a_client_is_refused_from_its_header() {
    use bytes::BytesMut;
    use proto::{decode_request_from, kind};
    // USERS RESPONSE announcing 65535 users, with only the type and count
    // in hand: refused without waiting for the 512 KiB body.
    let mut buf = BytesMut::from(&[0u8, 6, 0xff, 0xff][..]);
    let err = decode_request_from(&mut buf).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnexpectedPacket);
    assert_eq!(err.request_type(), kind::USERS_RESPONSE);
    assert!(err.to_string().contains("USERS RESPONSE"), "{err}");
    // Every client request still decodes.
    let mut ok = BytesMut::from(&[0u8, 5, 0, 0, 0, 0, 0, 0, 0, 7][..]);
    assert!(decode_request_from(&mut ok).unwrap().is_some());
    for t in 1..=26u16 {
        let mut one = BytesMut::from(&t.to_be_bytes()[..]);
        let refused = decode_request_from(&mut one).is_err();
        assert_eq!(refused, kind::sent_by_server(t), "type {t}");
    }
}
