//! Feeds arbitrary bytes to the decoder in two pieces, split where the
//! first byte says. The decoder must never panic, must decode the same
//! packets however the stream is split, and every packet it yields must
//! re-encode to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{decode, DecodeError, Decoder, Packet};

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
});
