//! Golden byte vectors: one per packet type, checked both ways. The same
//! bytes are listed in docs/PROTOCOL.md.

use bytes::Bytes;
use proto::{decode, ErrorCode, Packet};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn vectors() -> Vec<(Packet, &'static str)> {
    use Packet::*;
    vec![
        (SessionRequest { name: "bob".into() }, "0001 0003 626f62"),
        (
            SessionCookie {
                user: 1,
                session: 0x0102_0304_0506_0708,
            },
            "0002 0000000000000001 0102030405060708",
        ),
        (
            Error {
                request_type: 9,
                code: ErrorCode::UnknownUser,
                subject: 5,
                text: "no".into(),
            },
            "0003 0009 0006 0000000000000005 0002 6e6f",
        ),
        (
            SessionPreserve {
                session: 0x0102_0304_0506_0708,
            },
            "0004 0102030405060708",
        ),
        (UsersRequest { session: 2 }, "0005 0000000000000002"),
        (
            UsersResponse { users: vec![1, 2] },
            "0006 0002 0000000000000001 0000000000000002",
        ),
        (
            UserDataRequest {
                session: 2,
                user: 3,
            },
            "0007 0000000000000002 0000000000000003",
        ),
        (
            UserDataResponse {
                user: 3,
                name: "Zoë".into(),
            },
            "0008 0000000000000003 0004 5a6fc3ab",
        ),
        (
            MessageRequest {
                session: 2,
                to: 3,
                message: 4,
                body: b(b"hi"),
            },
            "0009 0000000000000002 0000000000000003 0000000000000004 0002 6869",
        ),
        (MessageResponse { message: 4 }, "000a 0000000000000004"),
        (
            BroadcastRequest {
                session: 2,
                message: 5,
                body: b(b"yo"),
            },
            "000b 0000000000000002 0000000000000005 0002 796f",
        ),
        (BroadcastResponse { message: 5 }, "000c 0000000000000005"),
        (
            IncomingMessage {
                from: 1,
                message: 0x8000_0000_0000_0001,
                body: b(b"yo"),
            },
            "000d 0000000000000001 8000000000000001 0002 796f",
        ),
        (
            IncomingMessageAck {
                message: 0x8000_0000_0000_0001,
            },
            "000e 8000000000000001",
        ),
        (
            FileDownloadRequest {
                session: 2,
                file: 7,
            },
            "000f 0000000000000002 0000000000000007",
        ),
        (
            FileDownloadResponse {
                file: 7,
                transaction: 8,
            },
            "0010 0000000000000007 0000000000000008",
        ),
        (
            DownloadChunkRequest {
                transaction: 8,
                chunk: 1,
            },
            "0011 0000000000000008 00000001",
        ),
        (
            DownloadChunkResponse {
                transaction: 8,
                chunk: 1,
                data: b(&[0xff]),
            },
            "0012 0000000000000008 00000001 0001 ff",
        ),
        (FilesRequest { session: 2 }, "0013 0000000000000002"),
        (FilesResponse { files: vec![] }, "0014 0000"),
        (
            FileDataRequest {
                session: 2,
                file: 7,
            },
            "0015 0000000000000002 0000000000000007",
        ),
        (
            FileDataResponse {
                file: 7,
                size: 257,
                name: "a.txt".into(),
            },
            "0016 0000000000000007 00000101 0005 612e747874",
        ),
        (
            FileUploadRequest {
                session: 2,
                size: 257,
                name: "a.txt".into(),
            },
            "0017 0000000000000002 00000101 0005 612e747874",
        ),
        (
            FileUploadResponse {
                file: 7,
                transaction: 9,
            },
            "0018 0000000000000007 0000000000000009",
        ),
        (
            UploadChunkRequest {
                transaction: 9,
                chunk: 0,
                data: b(b"ab"),
            },
            "0019 0000000000000009 00000000 0002 6162",
        ),
        (
            UploadChunkResponse {
                transaction: 9,
                chunk: 0,
            },
            "001a 0000000000000009 00000000",
        ),
        (
            AccountSignIn {
                name: "bob".into(),
                password: "password".into(),
            },
            "001b 0003 626f62 0008 70617373776f7264",
        ),
        (
            PasswordChange {
                session: 2,
                old: "".into(),
                new: "new-pass".into(),
            },
            "001c 0000000000000002 0000 0008 6e65772d70617373",
        ),
        (PasswordChanged { user: 3 }, "001d 0000000000000003"),
    ]
}

#[test]
fn every_packet_type_has_a_vector() {
    let mut kinds: Vec<u16> = vectors().iter().map(|(p, _)| p.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, (1..=29).collect::<Vec<u16>>());
}

#[test]
fn encoding_gives_the_golden_bytes() {
    for (packet, bytes) in vectors() {
        let encoded = packet.to_bytes().unwrap();
        assert_eq!(encoded, hex(bytes), "{packet:?}");
        assert_eq!(encoded.len(), packet.encoded_len(), "{packet:?}");
    }
}

#[test]
fn decoding_the_golden_bytes_gives_the_packet() {
    for (packet, bytes) in vectors() {
        let bytes = hex(bytes);
        assert_eq!(decode(&bytes).unwrap(), Some((packet.clone(), bytes.len())));
        // Every strict prefix is "need more bytes", never an error.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]).unwrap(),
                None,
                "{packet:?} cut at {cut}"
            );
        }
    }
}
