//! Property tests: every packet round-trips, and any byte stream fed in any
//! split decodes exactly as the whole buffer does, without panicking.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proto::{decode, DecodeError, Decoder, ErrorCode, Packet};

fn blob(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn name() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    use Packet::*;
    let n = any::<u64>;
    prop_oneof![
        name().prop_map(|name| SessionRequest { name }),
        (n(), n()).prop_map(|(user, session)| SessionCookie { user, session }),
        (any::<u16>(), any::<u16>(), n(), name()).prop_map(|(request_type, c, subject, text)| {
            Error {
                request_type,
                code: ErrorCode::from_u16(c),
                subject,
                text,
            }
        }),
        n().prop_map(|session| SessionPreserve { session }),
        n().prop_map(|session| UsersRequest { session }),
        vec(n(), 0..20).prop_map(|users| UsersResponse { users }),
        (n(), n()).prop_map(|(session, user)| UserDataRequest { session, user }),
        (n(), name()).prop_map(|(user, name)| UserDataResponse { user, name }),
        (n(), n(), n(), blob(300)).prop_map(|(session, to, message, body)| MessageRequest {
            session,
            to,
            message,
            body
        }),
        n().prop_map(|message| MessageResponse { message }),
        (n(), n(), blob(300)).prop_map(|(session, message, body)| BroadcastRequest {
            session,
            message,
            body
        }),
        n().prop_map(|message| BroadcastResponse { message }),
        (n(), n(), blob(300)).prop_map(|(from, message, body)| IncomingMessage {
            from,
            message,
            body
        }),
        n().prop_map(|message| IncomingMessageAck { message }),
        (n(), n()).prop_map(|(session, file)| FileDownloadRequest { session, file }),
        (n(), n()).prop_map(|(file, transaction)| FileDownloadResponse { file, transaction }),
        (n(), any::<u32>())
            .prop_map(|(transaction, chunk)| DownloadChunkRequest { transaction, chunk }),
        (n(), any::<u32>(), blob(256)).prop_map(|(transaction, chunk, data)| {
            DownloadChunkResponse {
                transaction,
                chunk,
                data,
            }
        }),
        n().prop_map(|session| FilesRequest { session }),
        vec(n(), 0..20).prop_map(|files| FilesResponse { files }),
        (n(), n()).prop_map(|(session, file)| FileDataRequest { session, file }),
        (n(), any::<u32>(), name()).prop_map(|(file, size, name)| FileDataResponse {
            file,
            size,
            name
        }),
        (n(), any::<u32>(), name()).prop_map(|(session, size, name)| FileUploadRequest {
            session,
            size,
            name
        }),
        (n(), n()).prop_map(|(file, transaction)| FileUploadResponse { file, transaction }),
        (n(), any::<u32>(), blob(256)).prop_map(|(transaction, chunk, data)| UploadChunkRequest {
            transaction,
            chunk,
            data
        }),
        (n(), any::<u32>())
            .prop_map(|(transaction, chunk)| UploadChunkResponse { transaction, chunk }),
        (name(), name()).prop_map(|(name, p)| AccountSignIn {
            name,
            password: p.into()
        }),
        (n(), name(), name()).prop_map(|(session, old, new)| PasswordChange {
            session,
            old: old.into(),
            new: new.into()
        }),
        n().prop_map(|user| PasswordChanged { user }),
    ]
}

/// Everything a decoder yields from `pieces`: the packets, then the error
/// if one stopped it.
fn decode_pieces(pieces: &[&[u8]]) -> (Vec<Packet>, Option<DecodeError>) {
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

fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(&bytes[start..cut]);
        start = cut;
    }
    pieces.push(&bytes[start..]);
    pieces
}

proptest! {
    #[test]
    fn any_packet_round_trips(packet in arb_packet()) {
        let bytes = packet.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), packet.encoded_len());
        prop_assert_eq!(decode(&bytes).unwrap(), Some((packet, bytes.len())));
    }

    #[test]
    fn a_stream_of_packets_decodes_the_same_in_any_split(
        packets in vec(arb_packet(), 1..8),
        points in vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            p.encode(&mut stream).unwrap();
        }
        let (got, err) = decode_pieces(&split_at_points(&stream, &points));
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn any_bytes_in_any_split_decode_as_the_whole_buffer_does(
        bytes in vec(any::<u8>(), 0..600),
        points in vec(any::<usize>(), 0..12),
    ) {
        let whole = decode_pieces(&[&bytes]);
        let split = decode_pieces(&split_at_points(&bytes, &points));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn valid_type_prefixes_with_random_tails_never_panic(
        t in 0u16..30,
        tail in vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = t.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let _ = decode_pieces(&[&bytes]);
    }
}

/// Every character names may not hold, besides Cc controls (docs/PROTOCOL.md,
/// "Names, blobs and chunks").
const REFUSED: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF),
];

fn refused_char() -> impl Strategy<Value = char> {
    (0..REFUSED.len(), any::<u32>()).prop_map(|(i, k)| {
        let (lo, hi) = REFUSED[i];
        char::from_u32(lo + k % (hi - lo + 1)).expect("no surrogates in the table")
    })
}

proptest! {
    #[test]
    fn a_name_holding_an_invisible_character_is_refused(
        before in "[a-zA-Z0-9 é🙂]{0,10}",
        c in refused_char(),
        after in "[a-zA-Z0-9 é🙂]{0,10}",
    ) {
        let name = format!("{before}{c}{after}");
        let expected = Err(proto::limits::NameError::Invisible(c as u32));
        prop_assert_eq!(proto::limits::validate_user_name(&name), expected.clone());
        prop_assert_eq!(proto::limits::validate_file_name(&name), expected);
    }

    #[test]
    fn letters_digits_and_single_inner_spaces_are_accepted(
        words in vec("[\\p{L}\\p{Nd}]{1,6}", 1..6),
    ) {
        let name = words.join(" ");
        prop_assume!(name.len() <= proto::limits::MAX_USER_NAME);
        prop_assert_eq!(proto::limits::validate_user_name(&name), Ok(()));
        prop_assert_eq!(proto::limits::validate_file_name(&name), Ok(()));
    }
}
