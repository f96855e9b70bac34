//! Feeds arbitrary bytes to the decoder in two pieces, split where the
//! first byte says. The decoder must never panic, must decode the same
//! packets however the stream is split, and every packet it yields must
//! re-encode to bytes that decode to the same packet. The server's reading
//! path (`decode_request_from`) must yield the same packets up to the first
//! one only servers send, and refuse that one from its type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use bytes::BytesMut;
use proto::{decode, decode_request_from, kind, DecodeError, Decoder, Packet};

fn decode_all(pieces: &[&[u8]]) -> (Vec<Packet>, Option<DecodeError>) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        d.feed(piece);
        loop {
            match d.next_packet() {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(first) % (rest.len() + 1);
    let whole = decode_all(&[rest]);
    let split = decode_all(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "the split at {cut} changed the result");
    for packet in &whole.0 {
        let bytes = packet.to_bytes().expect("a decoded packet re-encodes");
        let again = decode(&bytes).expect("re-encoded bytes decode");
        assert_eq!(again, Some((packet.clone(), bytes.len())));
    }
    let mut buf = BytesMut::from(rest);
    let mut requests = Vec::new();
    loop {
        match decode_request_from(&mut buf) {
            Ok(Some(p)) => {
                assert!(!kind::sent_by_server(p.kind()), "{p:?} passed the server's check");
                requests.push(p);
            }
            Ok(None) => break,
            Err(e) => {
                if let DecodeError::ServerOnly { kind: t, .. } = e {
                    assert!(kind::sent_by_server(t));
                }
                break;
            }
        }
    }
    // Up to where the server stopped, it read what the plain decoder read.
    assert!(whole.0.starts_with(&requests) || requests.len() <= whole.0.len());
    assert_eq!(&whole.0[..requests.len().min(whole.0.len())], &requests[..]);
});
