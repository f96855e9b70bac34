//! The sans-IO client core driven in memory: server packets are fed as
//! bytes, what the core sends is decoded and checked. Time is simulated.

use std::time::Duration;

use bytes::Bytes;
use proto::{Client, ClientConfig, Decoder, ErrorCode, Event, Packet};

const S: u64 = 0xfeed;
const USER: u64 = 7;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Everything the core has queued to send, decoded.
fn sent(c: &mut Client) -> Vec<Packet> {
    let mut d = Decoder::new();
    while let Some(bytes) = c.poll_transmit() {
        d.feed(&bytes);
    }
    let mut out = Vec::new();
    while let Some(p) = d.next_packet().unwrap() {
        out.push(p);
    }
    out
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn feed(c: &mut Client, now: Duration, packets: &[Packet]) {
    let mut bytes = Vec::new();
    for p in packets {
        p.encode(&mut bytes).unwrap();
    }
    c.handle_input(now, &bytes).unwrap();
}

fn config() -> ClientConfig {
    ClientConfig {
        first_message_number: 100,
        window: 2,
        ..ClientConfig::default()
    }
}

/// A client signed in as user 7 with session 0xfeed, queues drained.
fn signed_in() -> Client {
    let mut c = Client::new(config());
    c.sign_in("alice").unwrap();
    c.connected(secs(0));
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "alice".into()
        }]
    );
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::SignedIn {
            user: USER,
            session: S,
            resumed: false
        }]
    );
    c
}

#[test]
fn sign_in_sends_the_name_and_the_cookie_signs_in() {
    let c = signed_in();
    assert!(c.is_signed_in());
    assert_eq!((c.user(), c.session()), (Some(USER), Some(S)));
}

#[test]
fn a_name_in_use_fails_the_sign_in_with_the_servers_words() {
    let mut c = Client::new(config());
    c.sign_in("alice").unwrap();
    c.connected(secs(0));
    sent(&mut c);
    feed(
        &mut c,
        secs(0),
        &[Packet::Error {
            request_type: 1,
            code: ErrorCode::NameInUse,
            subject: 0,
            text: "taken".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::SignInFailed {
            code: ErrorCode::NameInUse,
            text: "taken".into()
        }]
    );
    assert!(!c.is_signed_in());
}

#[test]
fn invalid_names_are_refused_before_sending() {
    let mut c = Client::new(config());
    assert!(c.sign_in("").is_err());
    assert!(c.sign_in("a\u{0}b").is_err());
}

#[test]
fn an_idle_session_is_kept_alive_with_session_preserve() {
    let mut c = signed_in();
    sent(&mut c);
    assert_eq!(c.poll_timeout(), Some(secs(10)));
    c.handle_timeout(secs(9));
    assert!(sent(&mut c).is_empty());
    c.handle_timeout(secs(10));
    assert_eq!(sent(&mut c), vec![Packet::SessionPreserve { session: S }]);
    assert_eq!(c.poll_timeout(), Some(secs(20)));
    // Sending anything counts as activity.
    c.handle_timeout(secs(15));
    c.request_users().unwrap();
    assert_eq!(c.poll_timeout(), Some(secs(25)));
}

#[test]
fn messages_are_numbered_and_kept_until_acknowledged() {
    let mut c = signed_in();
    let a = c.send_message(9, Bytes::from_static(b"hi")).unwrap();
    let b = c.broadcast(Bytes::from_static(b"all")).unwrap();
    assert_eq!((a, b), (100, 101));
    assert_eq!(
        sent(&mut c),
        vec![
            Packet::MessageRequest {
                session: S,
                to: 9,
                message: 100,
                body: Bytes::from_static(b"hi")
            },
            Packet::BroadcastRequest {
                session: S,
                message: 101,
                body: Bytes::from_static(b"all")
            },
        ]
    );
    assert_eq!(c.unacknowledged().len(), 2);
    feed(
        &mut c,
        secs(1),
        &[
            Packet::MessageResponse { message: 100 },
            Packet::BroadcastResponse { message: 101 },
        ],
    );
    assert_eq!(
        events(&mut c),
        vec![
            Event::MessageSent { message: 100 },
            Event::MessageSent { message: 101 }
        ]
    );
    assert!(c.unacknowledged().is_empty());
}

#[test]
fn a_refused_message_is_reported_with_its_number() {
    let mut c = signed_in();
    let n = c.send_message(99, Bytes::new()).unwrap();
    feed(
        &mut c,
        secs(1),
        &[Packet::Error {
            request_type: 9,
            code: ErrorCode::UnknownUser,
            subject: n,
            text: "no".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::MessageFailed {
            message: n,
            code: ErrorCode::UnknownUser,
            text: "no".into()
        }]
    );
}

#[test]
fn after_a_reconnect_the_session_resumes_and_unacknowledged_messages_are_resent() {
    let mut c = signed_in();
    c.send_message(9, Bytes::from_static(b"lost?")).unwrap();
    sent(&mut c);
    c.disconnected();
    assert!(!c.is_signed_in());
    c.connected(secs(5));
    assert_eq!(sent(&mut c), vec![Packet::SessionPreserve { session: S }]);
    feed(
        &mut c,
        secs(5),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::SignedIn {
            user: USER,
            session: S,
            resumed: true
        }]
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::MessageRequest {
            session: S,
            to: 9,
            message: 100,
            body: Bytes::from_static(b"lost?")
        }]
    );
}

#[test]
fn a_session_that_cannot_be_resumed_signs_in_again_by_name() {
    let mut c = signed_in();
    c.disconnected();
    c.connected(secs(40));
    sent(&mut c);
    feed(
        &mut c,
        secs(40),
        &[Packet::Error {
            request_type: 4,
            code: ErrorCode::BadSession,
            subject: 0,
            text: "expired".into(),
        }],
    );
    assert_eq!(events(&mut c), vec![Event::SessionLost]);
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "alice".into()
        }]
    );
}

#[test]
fn a_page_reload_resumes_a_remembered_session() {
    let mut c = Client::new(config());
    c.resume_session(S);
    c.connected(secs(0));
    assert_eq!(sent(&mut c), vec![Packet::SessionPreserve { session: S }]);
}

#[test]
fn incoming_messages_are_acknowledged_every_time_and_reported_once() {
    let mut c = signed_in();
    let msg = Packet::IncomingMessage {
        from: 3,
        message: 55,
        body: Bytes::from_static(b"hey"),
    };
    feed(&mut c, secs(1), &[msg.clone(), msg]);
    assert_eq!(
        sent(&mut c),
        vec![
            Packet::IncomingMessageAck { message: 55 },
            Packet::IncomingMessageAck { message: 55 }
        ]
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Incoming {
            from: 3,
            message: 55,
            broadcast: false,
            body: Bytes::from_static(b"hey")
        }]
    );
}

#[test]
fn bit_63_of_a_delivery_number_marks_a_broadcast() {
    let mut c = signed_in();
    let broadcast = 55 | (1 << 63);
    feed(
        &mut c,
        secs(1),
        &[Packet::IncomingMessage {
            from: 3,
            message: broadcast,
            body: Bytes::from_static(b"all"),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Incoming {
            from: 3,
            message: broadcast,
            broadcast: true,
            body: Bytes::from_static(b"all")
        }]
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::IncomingMessageAck { message: broadcast }],
        "acknowledged with the number as delivered, bit 63 included"
    );
    // Direct delivery 55 is a different message from broadcast 55.
    feed(
        &mut c,
        secs(1),
        &[Packet::IncomingMessage {
            from: 3,
            message: 55,
            body: Bytes::new(),
        }],
    );
    assert!(matches!(
        events(&mut c)[..],
        [Event::Incoming {
            message: 55,
            broadcast: false,
            ..
        }]
    ));
}

#[test]
fn messages_sent_before_signing_in_go_out_after() {
    let mut c = Client::new(config());
    c.sign_in("alice").unwrap();
    let n = c.send_message(9, Bytes::from_static(b"early")).unwrap();
    assert!(c.request_users().is_err(), "queries need a session");
    c.connected(secs(0));
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "alice".into()
        }]
    );
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::MessageRequest {
            session: S,
            to: 9,
            message: n,
            body: Bytes::from_static(b"early")
        }]
    );
}

#[test]
fn an_upload_keeps_the_window_full_and_completes() {
    let mut c = signed_in();
    let data: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
    let t = c.upload("f.bin", Bytes::from(data.clone())).unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::FileUploadRequest {
            session: S,
            size: 700,
            name: "f.bin".into()
        }]
    );
    feed(
        &mut c,
        secs(1),
        &[Packet::FileUploadResponse {
            file: 4,
            transaction: 8,
        }],
    );
    let chunk = |n: u32, range: std::ops::Range<usize>| Packet::UploadChunkRequest {
        transaction: 8,
        chunk: n,
        data: Bytes::copy_from_slice(&data[range]),
    };
    // Window 2: two chunks in flight.
    assert_eq!(sent(&mut c), vec![chunk(0, 0..256), chunk(1, 256..512)]);
    feed(
        &mut c,
        secs(1),
        &[Packet::UploadChunkResponse {
            transaction: 8,
            chunk: 0,
        }],
    );
    assert_eq!(sent(&mut c), vec![chunk(2, 512..700)]);
    feed(
        &mut c,
        secs(1),
        &[
            Packet::UploadChunkResponse {
                transaction: 8,
                chunk: 1,
            },
            Packet::UploadChunkResponse {
                transaction: 8,
                chunk: 2,
            },
        ],
    );
    let ev = events(&mut c);
    assert!(ev.contains(&Event::TransferStarted {
        transfer: t,
        file: 4,
        size: 700
    }));
    assert!(
        ev.contains(&Event::TransferComplete {
            transfer: t,
            file: 4
        }),
        "{ev:?}"
    );
    assert_eq!(c.active_transfers(), 0);
}

#[test]
fn an_empty_upload_completes_on_the_upload_response() {
    let mut c = signed_in();
    let t = c.upload("empty", Bytes::new()).unwrap();
    sent(&mut c);
    feed(
        &mut c,
        secs(1),
        &[Packet::FileUploadResponse {
            file: 5,
            transaction: 9,
        }],
    );
    assert!(events(&mut c).contains(&Event::TransferComplete {
        transfer: t,
        file: 5
    }));
    assert!(sent(&mut c).is_empty());
}

#[test]
fn a_download_asks_for_the_size_then_the_transaction_then_the_chunks() {
    let mut c = signed_in();
    let t = c.download(4);
    assert_eq!(
        sent(&mut c),
        vec![Packet::FileDataRequest {
            session: S,
            file: 4
        }]
    );
    feed(
        &mut c,
        secs(1),
        &[Packet::FileDataResponse {
            file: 4,
            size: 300,
            name: "f".into(),
        }],
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::FileDownloadRequest {
            session: S,
            file: 4
        }]
    );
    feed(
        &mut c,
        secs(1),
        &[Packet::FileDownloadResponse {
            file: 4,
            transaction: 6,
        }],
    );
    assert_eq!(
        sent(&mut c),
        vec![
            Packet::DownloadChunkRequest {
                transaction: 6,
                chunk: 0
            },
            Packet::DownloadChunkRequest {
                transaction: 6,
                chunk: 1
            },
        ]
    );
    events(&mut c);
    feed(
        &mut c,
        secs(1),
        &[
            Packet::DownloadChunkResponse {
                transaction: 6,
                chunk: 0,
                data: Bytes::from(vec![1; 256]),
            },
            Packet::DownloadChunkResponse {
                transaction: 6,
                chunk: 1,
                data: Bytes::from(vec![2; 44]),
            },
        ],
    );
    let ev = events(&mut c);
    assert!(ev.contains(&Event::DownloadData {
        transfer: t,
        offset: 0,
        data: Bytes::from(vec![1; 256])
    }));
    assert!(ev.contains(&Event::DownloadData {
        transfer: t,
        offset: 256,
        data: Bytes::from(vec![2; 44])
    }));
    assert!(
        ev.contains(&Event::TransferComplete {
            transfer: t,
            file: 4
        }),
        "{ev:?}"
    );
}

#[test]
fn a_chunk_of_the_wrong_length_fails_the_download() {
    let mut c = signed_in();
    let t = c.download(4);
    feed(
        &mut c,
        secs(1),
        &[Packet::FileDataResponse {
            file: 4,
            size: 300,
            name: "f".into(),
        }],
    );
    feed(
        &mut c,
        secs(1),
        &[Packet::FileDownloadResponse {
            file: 4,
            transaction: 6,
        }],
    );
    events(&mut c);
    feed(
        &mut c,
        secs(1),
        &[Packet::DownloadChunkResponse {
            transaction: 6,
            chunk: 1,
            data: Bytes::from(vec![2; 45]),
        }],
    );
    assert!(matches!(
        events(&mut c)[..],
        [Event::TransferFailed { transfer, code: ErrorCode::BadChunk, .. }] if transfer == t
    ));
}

#[test]
fn an_unknown_file_fails_its_download() {
    let mut c = signed_in();
    let t = c.download(77);
    feed(
        &mut c,
        secs(1),
        &[Packet::Error {
            request_type: 21,
            code: ErrorCode::UnknownFile,
            subject: 77,
            text: "no".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::TransferFailed {
            transfer: t,
            code: ErrorCode::UnknownFile,
            text: "no".into()
        }]
    );
}

#[test]
fn a_corrupt_stream_is_an_error_for_the_shell() {
    let mut c = signed_in();
    assert!(c.handle_input(secs(1), &[0xff, 0xff]).is_err());
}

#[test]
fn the_server_ending_the_session_is_reported() {
    let mut c = signed_in();
    feed(
        &mut c,
        secs(31),
        &[Packet::Error {
            request_type: 0,
            code: ErrorCode::BadSession,
            subject: 0,
            text: "expired".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Disconnected {
            code: ErrorCode::BadSession,
            text: "expired".into()
        }]
    );
    // The session is gone: the next transport signs in by name.
    c.disconnected();
    c.connected(secs(32));
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "alice".into()
        }]
    );
}

mod simulated_server {
    //! A property: against an in-memory server that acknowledges chunks,
    //! every upload completes and the server reassembles exactly its bytes.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_upload_completes_with_its_exact_bytes(
            sizes in proptest::collection::vec(0usize..3000, 1..5),
            window in 1u32..8,
        ) {
            let mut c = Client::new(ClientConfig { window, ..config() });
            c.sign_in("alice").unwrap();
            c.connected(secs(0));
            sent(&mut c);
            feed(&mut c, secs(0), &[Packet::SessionCookie { user: USER, session: S }]);
            let inputs: Vec<Vec<u8>> = sizes.iter().map(|&n| (0..n).map(|i| (i * 13 + n) as u8).collect()).collect();
            let ids: Vec<_> = inputs.iter().enumerate()
                .map(|(i, d)| c.upload(&format!("f{i}"), Bytes::from(d.clone())).unwrap())
                .collect();
            let mut stored: Vec<Vec<u8>> = Vec::new();
            let mut by_transaction = std::collections::HashMap::new();
            let mut completed = Vec::new();
            // Chunks sent and not yet acknowledged, per transaction.
            let mut unanswered = std::collections::HashMap::<u64, u32>::new();
            for _round in 0..10_000 {
                let out = sent(&mut c);
                if out.is_empty() { break; }
                let mut replies = Vec::new();
                for p in out {
                    match p {
                        Packet::FileUploadRequest { size, .. } => {
                            let file = stored.len() as u64;
                            stored.push(vec![0; size as usize]);
                            by_transaction.insert(1000 + file, file);
                            replies.push(Packet::FileUploadResponse { file, transaction: 1000 + file });
                        }
                        Packet::UploadChunkRequest { transaction, chunk, data } => {
                            let file = by_transaction[&transaction] as usize;
                            let start = chunk as usize * 256;
                            stored[file][start..start + data.len()].copy_from_slice(&data);
                            let n = unanswered.entry(transaction).or_default();
                            *n += 1;
                            prop_assert!(*n <= window, "{n} chunks in flight, window {window}");
                            replies.push(Packet::UploadChunkResponse { transaction, chunk });
                        }
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                for r in &replies {
                    if let Packet::UploadChunkResponse { transaction, .. } = r {
                        *unanswered.get_mut(transaction).unwrap() -= 1;
                    }
                }
                feed(&mut c, secs(1), &replies);
                for e in events(&mut c) {
                    if let Event::TransferComplete { transfer, file } = e {
                        completed.push((transfer, file));
                    }
                }
            }
            prop_assert_eq!(completed.len(), ids.len());
            for (transfer, file) in completed {
                let i = ids.iter().position(|t| *t == transfer).unwrap();
                prop_assert_eq!(&stored[file as usize], &inputs[i]);
            }
        }
    }
}

#[test]
fn a_shell_can_acknowledge_incoming_messages_itself() {
    let mut c = Client::new(ClientConfig {
        acknowledge_incoming: false,
        ..config()
    });
    c.sign_in("alice").unwrap();
    c.connected(secs(0));
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    sent(&mut c);
    feed(
        &mut c,
        secs(1),
        &[Packet::IncomingMessage {
            from: 3,
            message: 8,
            body: Bytes::new(),
        }],
    );
    assert!(sent(&mut c).is_empty(), "nothing acknowledged yet");
    assert!(matches!(
        events(&mut c)[..],
        [_, Event::Incoming { message: 8, .. }]
    ));
    c.acknowledge(8);
    assert_eq!(
        sent(&mut c),
        vec![Packet::IncomingMessageAck { message: 8 }]
    );
}

#[test]
fn a_name_given_after_the_transport_is_up_signs_in_at_once() {
    let mut c = Client::new(config());
    c.connected(secs(0));
    assert!(sent(&mut c).is_empty(), "no name yet");
    c.sign_in("late").unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "late".into()
        }]
    );
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    assert!(c.is_signed_in());
    // A failed attempt can be retried with another name on the same transport.
    let mut c = Client::new(config());
    c.sign_in("taken").unwrap();
    c.connected(secs(0));
    sent(&mut c);
    feed(
        &mut c,
        secs(0),
        &[Packet::Error {
            request_type: 1,
            code: ErrorCode::NameInUse,
            subject: 0,
            text: "x".into(),
        }],
    );
    c.sign_in("free").unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::SessionRequest {
            name: "free".into()
        }]
    );
}

#[test]
fn a_cancelled_upload_does_not_take_the_next_uploads_answer() {
    let mut c = signed_in();
    let first = c.upload("a", Bytes::from(vec![1; 10])).unwrap();
    let second = c.upload("b", Bytes::from(vec![2; 10])).unwrap();
    assert_eq!(sent(&mut c).len(), 2, "both FILE UPLOAD REQUESTs are out");
    assert!(c.cancel(first));
    // The server answers both requests, in order.
    feed(
        &mut c,
        secs(1),
        &[
            Packet::FileUploadResponse {
                file: 1,
                transaction: 11,
            },
            Packet::FileUploadResponse {
                file: 2,
                transaction: 12,
            },
        ],
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::UploadChunkRequest {
            transaction: 12,
            chunk: 0,
            data: Bytes::from(vec![2; 10])
        }],
        "the first answer belongs to the cancelled upload"
    );
    assert!(events(&mut c).contains(&Event::TransferStarted {
        transfer: second,
        file: 2,
        size: 10
    }));
}

#[test]
fn a_cancelled_upload_does_not_take_the_next_uploads_error() {
    let mut c = signed_in();
    let first = c.upload("a", Bytes::from(vec![1; 10])).unwrap();
    let second = c.upload("b", Bytes::from(vec![2; 10])).unwrap();
    sent(&mut c);
    events(&mut c);
    assert!(c.cancel(first));
    feed(
        &mut c,
        secs(1),
        &[
            Packet::Error {
                request_type: 23,
                code: ErrorCode::TooLarge,
                subject: 0,
                text: "quota".into(),
            },
            Packet::FileUploadResponse {
                file: 2,
                transaction: 12,
            },
        ],
    );
    let ev = events(&mut c);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::TransferFailed { .. })),
        "the error was for the cancelled upload: {ev:?}"
    );
    assert!(ev.contains(&Event::TransferStarted {
        transfer: second,
        file: 2,
        size: 10
    }));
}

/// Signs in, starts a download of file 4 (`size` bytes) and answers its
/// FILE DATA and FILE DOWNLOAD requests (transaction 6); returns the
/// transfer and the chunk requests sent first.
fn download_open(c: &mut Client, size: u32) -> (proto::TransferId, Vec<Packet>) {
    let t = c.download(4);
    sent(c);
    feed(
        c,
        secs(1),
        &[Packet::FileDataResponse {
            file: 4,
            size,
            name: "f".into(),
        }],
    );
    sent(c);
    feed(
        c,
        secs(1),
        &[Packet::FileDownloadResponse {
            file: 4,
            transaction: 6,
        }],
    );
    events(c);
    (t, sent(c))
}

fn chunk_request(chunk: u32) -> Packet {
    Packet::DownloadChunkRequest {
        transaction: 6,
        chunk,
    }
}

fn chunk_response(size: usize, chunk: u32) -> Packet {
    let len = (size - chunk as usize * 256).min(256);
    Packet::DownloadChunkResponse {
        transaction: 6,
        chunk,
        data: Bytes::from(vec![chunk as u8; len]),
    }
}

#[test]
fn a_download_asks_for_the_next_chunk_as_each_arrives() {
    let mut c = signed_in();
    // 5 chunks, the last of 4 bytes; window 2.
    let size = 4 * 256 + 4;
    let (t, first) = download_open(&mut c, size as u32);
    assert_eq!(first, vec![chunk_request(0), chunk_request(1)]);
    let mut data = Vec::new();
    for chunk in 0..5 {
        feed(&mut c, secs(2), &[chunk_response(size, chunk)]);
        let expected: Vec<Packet> = (chunk + 2 < 5)
            .then(|| chunk_request(chunk + 2))
            .into_iter()
            .collect();
        assert_eq!(sent(&mut c), expected, "after chunk {chunk}");
        for e in events(&mut c) {
            match e {
                Event::DownloadData {
                    transfer,
                    offset,
                    data: d,
                } => {
                    assert_eq!((transfer, offset), (t, data.len() as u64));
                    data.extend_from_slice(&d);
                }
                Event::TransferComplete { transfer, file } => {
                    assert_eq!((transfer, file, chunk), (t, 4, 4));
                }
                Event::TransferProgress { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(data.len(), size);
    assert_eq!(c.active_transfers(), 0);
}

#[test]
fn a_download_resumes_from_the_first_unanswered_chunk_after_a_reconnect() {
    let mut c = signed_in();
    let size = 4 * 256;
    let (_, first) = download_open(&mut c, size as u32);
    assert_eq!(first, vec![chunk_request(0), chunk_request(1)]);
    feed(&mut c, secs(2), &[chunk_response(size, 0)]);
    assert_eq!(sent(&mut c), vec![chunk_request(2)]);
    c.disconnected();
    c.connected(secs(3));
    assert_eq!(sent(&mut c), vec![Packet::SessionPreserve { session: S }]);
    feed(
        &mut c,
        secs(3),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    // The transaction belongs to the session, which survived: chunks 1
    // and 2 were lost with the connection and are asked for again.
    assert_eq!(sent(&mut c), vec![chunk_request(1), chunk_request(2)]);
}

#[test]
fn a_download_the_server_ended_is_reopened_for_the_chunks_still_missing() {
    let mut c = signed_in();
    let size = 4 * 256;
    let (t, first) = download_open(&mut c, size as u32);
    assert_eq!(first, vec![chunk_request(0), chunk_request(1)]);
    feed(&mut c, secs(2), &[chunk_response(size, 0)]);
    assert_eq!(sent(&mut c), vec![chunk_request(2)]);
    // The server sent every chunk and ended the transaction, but answers 1
    // and 2 were lost; the requests for them are refused.
    let unknown = Packet::Error {
        request_type: 17,
        code: ErrorCode::UnknownTransaction,
        subject: 6,
        text: "no download of this session has that transaction".into(),
    };
    feed(&mut c, secs(3), &[unknown.clone(), unknown]);
    assert_eq!(
        sent(&mut c),
        vec![Packet::FileDownloadRequest {
            session: S,
            file: 4
        }]
    );
    assert!(events(&mut c)
        .iter()
        .all(|e| !matches!(e, Event::TransferFailed { .. } | Event::ServerError { .. })));
    feed(
        &mut c,
        secs(3),
        &[Packet::FileDownloadResponse {
            file: 4,
            transaction: 7,
        }],
    );
    let again: Vec<Packet> = [1, 2]
        .map(|chunk| Packet::DownloadChunkRequest {
            transaction: 7,
            chunk,
        })
        .to_vec();
    assert_eq!(sent(&mut c), again);
    for chunk in 1..4u32 {
        feed(
            &mut c,
            secs(4),
            &[Packet::DownloadChunkResponse {
                transaction: 7,
                chunk,
                data: Bytes::from(vec![chunk as u8; 256]),
            }],
        );
    }
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, Event::TransferComplete { transfer, .. } if *transfer == t)));
}

#[test]
fn an_upload_starts_over_when_the_session_is_lost() {
    let mut c = signed_in();
    let data = Bytes::from(vec![9u8; 600]);
    c.upload("f", data.clone()).unwrap();
    sent(&mut c);
    feed(
        &mut c,
        secs(1),
        &[Packet::FileUploadResponse {
            file: 4,
            transaction: 8,
        }],
    );
    sent(&mut c);
    c.disconnected();
    c.connected(secs(40));
    sent(&mut c);
    feed(
        &mut c,
        secs(40),
        &[
            Packet::Error {
                request_type: 4,
                code: ErrorCode::BadSession,
                subject: 0,
                text: "expired".into(),
            },
            Packet::SessionCookie {
                user: USER,
                session: S + 1,
            },
        ],
    );
    // The server discarded the old transaction with the session.
    assert_eq!(
        sent(&mut c),
        vec![
            Packet::SessionRequest {
                name: "alice".into()
            },
            Packet::FileUploadRequest {
                session: S + 1,
                size: 600,
                name: "f".into()
            }
        ]
    );
}

#[test]
fn a_password_signs_in_with_account_sign_in_and_again_after_a_lost_session() {
    let mut c = Client::new(config());
    assert!(matches!(
        c.sign_in_with_password("alice", "short"),
        Err(proto::ClientError::InvalidPassword(_))
    ));
    c.sign_in_with_password("alice", "correct horse").unwrap();
    c.connected(secs(0));
    let expected = vec![Packet::AccountSignIn {
        name: "alice".into(),
        password: "correct horse".into(),
    }];
    assert_eq!(sent(&mut c), expected);
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    events(&mut c);
    // The session expires while away: the core signs in again, with the
    // password it holds in memory.
    c.disconnected();
    c.connected(secs(40));
    sent(&mut c);
    feed(
        &mut c,
        secs(40),
        &[Packet::Error {
            request_type: 4,
            code: ErrorCode::BadSession,
            subject: 0,
            text: "expired".into(),
        }],
    );
    assert_eq!(sent(&mut c), expected);
}

#[test]
fn a_wrong_password_fails_the_sign_in_and_the_transport_stays() {
    let mut c = Client::new(config());
    c.sign_in_with_password("alice", "wrong password").unwrap();
    c.connected(secs(0));
    sent(&mut c);
    feed(
        &mut c,
        secs(0),
        &[Packet::Error {
            request_type: 27,
            code: ErrorCode::BadCredentials,
            subject: 0,
            text: "wrong name or password".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::SignInFailed {
            code: ErrorCode::BadCredentials,
            text: "wrong name or password".into()
        }]
    );
    c.sign_in_with_password("alice", "right password").unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::AccountSignIn {
            name: "alice".into(),
            password: "right password".into(),
        }]
    );
}

#[test]
fn a_password_change_is_sent_and_its_answer_reported() {
    let mut c = signed_in();
    assert_eq!(
        c.change_password("", "x"),
        Err(proto::ClientError::InvalidPassword(
            proto::limits::PasswordError(1)
        ))
    );
    c.change_password("", "first password").unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::PasswordChange {
            session: S,
            old: "".into(),
            new: "first password".into(),
        }]
    );
    feed(&mut c, secs(1), &[Packet::PasswordChanged { user: USER }]);
    assert_eq!(events(&mut c), vec![Event::PasswordChanged { user: USER }]);
    c.change_password("not it", "second password").unwrap();
    sent(&mut c);
    feed(
        &mut c,
        secs(2),
        &[Packet::Error {
            request_type: 28,
            code: ErrorCode::BadCredentials,
            subject: 0,
            text: "the current password is wrong".into(),
        }],
    );
    assert_eq!(
        events(&mut c),
        vec![Event::PasswordChangeFailed {
            code: ErrorCode::BadCredentials,
            text: "the current password is wrong".into()
        }]
    );
    // A lost session now signs in again with the password that was set.
    c.disconnected();
    c.connected(secs(40));
    sent(&mut c);
    feed(
        &mut c,
        secs(40),
        &[Packet::Error {
            request_type: 4,
            code: ErrorCode::BadSession,
            subject: 0,
            text: "expired".into(),
        }],
    );
    assert_eq!(
        sent(&mut c),
        vec![Packet::AccountSignIn {
            name: "alice".into(),
            password: "first password".into(),
        }]
    );
}

#[test]
fn a_password_change_whose_answer_was_lost_is_settled_by_the_next_sign_in() {
    let mut c = Client::new(config());
    c.sign_in_with_password("alice", "old password").unwrap();
    c.connected(secs(0));
    sent(&mut c);
    feed(
        &mut c,
        secs(0),
        &[Packet::SessionCookie {
            user: USER,
            session: S,
        }],
    );
    events(&mut c);
    c.change_password("old password", "new password").unwrap();
    sent(&mut c);
    // The connection drops before the answer; the session expires.
    c.disconnected();
    c.connected(secs(40));
    sent(&mut c);
    let expired = Packet::Error {
        request_type: 4,
        code: ErrorCode::BadSession,
        subject: 0,
        text: "expired".into(),
    };
    feed(&mut c, secs(40), &[expired]);
    let sign_in = |p: &str| Packet::AccountSignIn {
        name: "alice".into(),
        password: p.into(),
    };
    assert_eq!(sent(&mut c), vec![sign_in("old password")]);
    // The change went through: the old password is refused, the new one
    // is tried, and works.
    feed(
        &mut c,
        secs(40),
        &[Packet::Error {
            request_type: 27,
            code: ErrorCode::BadCredentials,
            subject: 0,
            text: "wrong name or password".into(),
        }],
    );
    assert_eq!(sent(&mut c), vec![sign_in("new password")]);
    feed(
        &mut c,
        secs(40),
        &[Packet::SessionCookie {
            user: USER,
            session: S + 1,
        }],
    );
    let evs = events(&mut c);
    assert!(
        evs.contains(&Event::PasswordChanged { user: USER }),
        "{evs:?}"
    );
    assert!(!evs.iter().any(|e| matches!(e, Event::SignInFailed { .. })));
}

#[test]
fn a_supplied_upload_is_read_as_it_is_sent_and_arrives_whole() {
    let mut c = signed_in();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let t = c.upload_supplied("big.bin", data.len() as u64).unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Packet::FileUploadRequest {
            session: S,
            size: 3000,
            name: "big.bin".into()
        }]
    );
    feed(
        &mut c,
        secs(1),
        &[Packet::FileUploadResponse {
            file: 4,
            transaction: 8,
        }],
    );
    // The fake shell reads what is wanted; the fake server answers every
    // chunk; at most 2 windows of 2 chunks are ever asked for ahead.
    let mut received = vec![None; 12];
    let mut complete = false;
    for _ in 0..100 {
        for e in events(&mut c) {
            match e {
                Event::UploadWants {
                    transfer,
                    offset,
                    len,
                } => {
                    assert_eq!(transfer, t);
                    assert!(len <= 4 * 256, "{len} bytes asked at once");
                    let (from, to) = (offset as usize, (offset + len) as usize);
                    // Supplied in two pieces, as slices of a file may come.
                    let mid = from + (to - from) / 2;
                    assert!(c.supply_upload(t, offset, &data[from..mid]));
                    assert!(!c.supply_upload(t, offset, &data[from..mid]), "twice");
                    assert!(c.supply_upload(t, mid as u64, &data[mid..to]));
                }
                Event::TransferComplete { transfer, file } => {
                    assert_eq!((transfer, file), (t, 4));
                    complete = true;
                }
                _ => {}
            }
        }
        let answers: Vec<Packet> = sent(&mut c)
            .into_iter()
            .map(|p| match p {
                Packet::UploadChunkRequest {
                    transaction: 8,
                    chunk,
                    data,
                } => {
                    received[chunk as usize] = Some(data);
                    Packet::UploadChunkResponse {
                        transaction: 8,
                        chunk,
                    }
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        if answers.is_empty() && complete {
            break;
        }
        feed(&mut c, secs(1), &answers);
    }
    assert!(complete, "the upload completed");
    let sent_bytes: Vec<u8> = received
        .into_iter()
        .map(|chunk| chunk.expect("every chunk was sent"))
        .flat_map(|b| b.to_vec())
        .collect();
    assert_eq!(sent_bytes, data);
    assert!(
        !c.supply_upload(t, 0, b"late"),
        "a finished upload takes nothing"
    );
    assert!(matches!(
        c.upload_supplied("huge", u64::from(u32::MAX) + 1),
        Err(proto::ClientError::FileTooLarge(_))
    ));
}
