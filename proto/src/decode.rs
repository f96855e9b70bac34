//! Reading packets from a byte stream, in two steps.
//!
//! [`frame_len`] first looks at the bytes in hand and says how long the
//! packet at the front is, or that more bytes are needed, without
//! allocating. Only when the whole packet is present does [`parse`] build
//! the value, so a length field of 65535 with three bytes in hand costs
//! nothing. [`Decoder`] wraps both for a stream fed in arbitrary pieces.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::error_code::ErrorCode;
use crate::limits::CHUNK_SIZE;
use crate::packet::{kind, Packet};

/// Why the bytes at the front of a stream are not a packet. The stream
/// cannot be resynchronised after any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The type is not one of the protocol's.
    #[error("unknown packet type {0}")]
    UnknownType(u16),
    /// A name or text field is not valid UTF-8.
    #[error("the {field} of a {packet} packet is not valid UTF-8")]
    InvalidUtf8 {
        /// The packet type.
        kind: u16,
        /// The packet type's name.
        packet: &'static str,
        /// The field.
        field: &'static str,
    },
    /// [`parse`] was given bytes that are not exactly one packet.
    #[error("a frame of {actual} bytes was given where the packet measures {expected:?}")]
    WrongFrameLength {
        /// The packet type.
        kind: u16,
        /// The measured length, `None` for an incomplete packet.
        expected: Option<usize>,
        /// The length given.
        actual: usize,
    },
    /// A client sent a packet type that only servers send. A server reports
    /// this from the first two bytes, without reading the body.
    #[error("{packet} is sent by servers, not clients")]
    ServerOnly {
        /// The packet type.
        kind: u16,
        /// The packet type's name.
        packet: &'static str,
    },
    /// A chunk's length field exceeds the 256-byte chunk size.
    #[error("a {packet} packet declares a chunk of {len} bytes; chunks hold at most 256")]
    ChunkTooLong {
        /// The packet type.
        kind: u16,
        /// The packet type's name.
        packet: &'static str,
        /// The declared length.
        len: usize,
    },
}

impl DecodeError {
    /// The packet type the error is about, for ERROR's `request type`.
    pub fn request_type(&self) -> u16 {
        match self {
            DecodeError::UnknownType(t) => *t,
            DecodeError::ServerOnly { kind, .. } => *kind,
            DecodeError::InvalidUtf8 { kind, .. }
            | DecodeError::ChunkTooLong { kind, .. }
            | DecodeError::WrongFrameLength { kind, .. } => *kind,
        }
    }

    /// The ERROR code that reports this failure to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownType(_) => ErrorCode::UnknownPacketType,
            DecodeError::ServerOnly { .. } => ErrorCode::UnexpectedPacket,
            _ => ErrorCode::Malformed,
        }
    }
}

/// Where a packet type's variable part is described. The two packet types
/// with two strings (27 and 28) are measured by [`two_strings`] instead.
struct Layout {
    /// Bytes before the variable part, type included.
    fixed: usize,
    /// The offset of the 2-byte count of the variable part, and the size
    /// of one counted item; `None` for fixed-size packets.
    count: Option<(usize, usize)>,
}

const fn fixed(n: usize) -> Layout {
    Layout {
        fixed: n,
        count: None,
    }
}

const fn counted(fixed: usize, item: usize) -> Layout {
    // The count is always the last fixed field.
    Layout {
        fixed,
        count: Some((fixed - 2, item)),
    }
}

fn layout(t: u16) -> Option<Layout> {
    Some(match t {
        kind::SESSION_REQUEST => counted(4, 1),
        kind::SESSION_COOKIE => fixed(18),
        kind::ERROR => counted(16, 1),
        kind::SESSION_PRESERVE | kind::USERS_REQUEST | kind::FILES_REQUEST => fixed(10),
        kind::USERS_RESPONSE | kind::FILES_RESPONSE => counted(4, 8),
        kind::USER_DATA_REQUEST
        | kind::FILE_DOWNLOAD_REQUEST
        | kind::FILE_DOWNLOAD_RESPONSE
        | kind::FILE_DATA_REQUEST
        | kind::FILE_UPLOAD_RESPONSE => fixed(18),
        kind::USER_DATA_RESPONSE => counted(12, 1),
        kind::MESSAGE_REQUEST => counted(28, 1),
        kind::MESSAGE_RESPONSE | kind::BROADCAST_RESPONSE | kind::INCOMING_MESSAGE_ACK => fixed(10),
        kind::BROADCAST_REQUEST | kind::INCOMING_MESSAGE => counted(20, 1),
        kind::DOWNLOAD_CHUNK_REQUEST | kind::UPLOAD_CHUNK_RESPONSE => fixed(14),
        kind::DOWNLOAD_CHUNK_RESPONSE
        | kind::UPLOAD_CHUNK_REQUEST
        | kind::FILE_DATA_RESPONSE
        | kind::FILE_UPLOAD_REQUEST => counted(16, 1),
        kind::PASSWORD_CHANGED => fixed(10),
        _ => return None,
    })
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Step one: the length of the packet at the front of `buf`.
///
/// `Ok(None)` means the bytes in hand are a prefix of a packet and more are
/// needed. Never allocates.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let t = be16(buf, 0) as u16;
    match t {
        kind::ACCOUNT_SIGN_IN => return Ok(two_strings(buf, 2)),
        kind::PASSWORD_CHANGE => return Ok(two_strings(buf, 10)),
        _ => {}
    }
    let layout = layout(t).ok_or(DecodeError::UnknownType(t))?;
    let Some((at, item)) = layout.count else {
        return Ok((buf.len() >= layout.fixed).then_some(layout.fixed));
    };
    if buf.len() < layout.fixed {
        return Ok(None);
    }
    let count = be16(buf, at);
    if matches!(
        t,
        kind::DOWNLOAD_CHUNK_RESPONSE | kind::UPLOAD_CHUNK_REQUEST
    ) && count > CHUNK_SIZE
    {
        return Err(DecodeError::ChunkTooLong {
            kind: t,
            packet: Packet::kind_name(t),
            len: count,
        });
    }
    let total = layout.fixed + count * item;
    Ok((buf.len() >= total).then_some(total))
}

/// The length of a packet whose fixed part ends at `at` with two
/// length-prefixed strings after it, or `None` while it is incomplete.
fn two_strings(buf: &[u8], at: usize) -> Option<usize> {
    if buf.len() < at + 2 {
        return None;
    }
    let second = at + 2 + be16(buf, at);
    if buf.len() < second + 2 {
        return None;
    }
    let total = second + 2 + be16(buf, second);
    (buf.len() >= total).then_some(total)
}

/// A cursor over one whole frame; every read is in bounds because
/// [`frame_len`] measured the frame from the same length fields.
struct Frame {
    bytes: Bytes,
    kind: u16,
}

impl Frame {
    fn u16(&mut self) -> u16 {
        self.bytes.get_u16()
    }
    fn u32(&mut self) -> u32 {
        self.bytes.get_u32()
    }
    fn u64(&mut self) -> u64 {
        self.bytes.get_u64()
    }
    fn blob(&mut self) -> Bytes {
        let n = usize::from(self.u16());
        self.bytes.split_to(n)
    }
    fn list(&mut self) -> Vec<u64> {
        let n = usize::from(self.u16());
        (0..n).map(|_| self.u64()).collect()
    }
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let blob = self.blob();
        String::from_utf8(blob.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            packet: Packet::kind_name(self.kind),
            field,
        })
    }
}

/// Step two: builds the packet from exactly one whole frame, as measured by
/// [`frame_len`]. Blobs share `frame`'s memory.
pub fn parse(frame: Bytes) -> Result<Packet, DecodeError> {
    match frame_len(&frame)? {
        Some(n) if n == frame.len() => {}
        // Callers pass what frame_len measured; anything else is reported
        // rather than trusted.
        measured => {
            return Err(DecodeError::WrongFrameLength {
                kind: be16_or_zero(&frame),
                expected: measured,
                actual: frame.len(),
            })
        }
    }
    let kind = be16(&frame, 0) as u16;
    let mut f = Frame { bytes: frame, kind };
    f.bytes.advance(2);
    use Packet::*;
    Ok(match kind {
        kind::SESSION_REQUEST => SessionRequest {
            name: f.string("name")?,
        },
        kind::SESSION_COOKIE => SessionCookie {
            user: f.u64(),
            session: f.u64(),
        },
        kind::ERROR => Error {
            request_type: f.u16(),
            code: ErrorCode::from_u16(f.u16()),
            subject: f.u64(),
            text: f.string("text")?,
        },
        kind::SESSION_PRESERVE => SessionPreserve { session: f.u64() },
        kind::USERS_REQUEST => UsersRequest { session: f.u64() },
        kind::USERS_RESPONSE => UsersResponse { users: f.list() },
        kind::USER_DATA_REQUEST => UserDataRequest {
            session: f.u64(),
            user: f.u64(),
        },
        kind::USER_DATA_RESPONSE => UserDataResponse {
            user: f.u64(),
            name: f.string("name")?,
        },
        kind::MESSAGE_REQUEST => MessageRequest {
            session: f.u64(),
            to: f.u64(),
            message: f.u64(),
            body: f.blob(),
        },
        kind::MESSAGE_RESPONSE => MessageResponse { message: f.u64() },
        kind::BROADCAST_REQUEST => BroadcastRequest {
            session: f.u64(),
            message: f.u64(),
            body: f.blob(),
        },
        kind::BROADCAST_RESPONSE => BroadcastResponse { message: f.u64() },
        kind::INCOMING_MESSAGE => IncomingMessage {
            from: f.u64(),
            message: f.u64(),
            body: f.blob(),
        },
        kind::INCOMING_MESSAGE_ACK => IncomingMessageAck { message: f.u64() },
        kind::FILE_DOWNLOAD_REQUEST => FileDownloadRequest {
            session: f.u64(),
            file: f.u64(),
        },
        kind::FILE_DOWNLOAD_RESPONSE => FileDownloadResponse {
            file: f.u64(),
            transaction: f.u64(),
        },
        kind::DOWNLOAD_CHUNK_REQUEST => DownloadChunkRequest {
            transaction: f.u64(),
            chunk: f.u32(),
        },
        kind::DOWNLOAD_CHUNK_RESPONSE => DownloadChunkResponse {
            transaction: f.u64(),
            chunk: f.u32(),
            data: f.blob(),
        },
        kind::FILES_REQUEST => FilesRequest { session: f.u64() },
        kind::FILES_RESPONSE => FilesResponse { files: f.list() },
        kind::FILE_DATA_REQUEST => FileDataRequest {
            session: f.u64(),
            file: f.u64(),
        },
        kind::FILE_DATA_RESPONSE => FileDataResponse {
            file: f.u64(),
            size: f.u32(),
            name: f.string("name")?,
        },
        kind::FILE_UPLOAD_REQUEST => FileUploadRequest {
            session: f.u64(),
            size: f.u32(),
            name: f.string("name")?,
        },
        kind::FILE_UPLOAD_RESPONSE => FileUploadResponse {
            file: f.u64(),
            transaction: f.u64(),
        },
        kind::UPLOAD_CHUNK_REQUEST => UploadChunkRequest {
            transaction: f.u64(),
            chunk: f.u32(),
            data: f.blob(),
        },
        kind::UPLOAD_CHUNK_RESPONSE => UploadChunkResponse {
            transaction: f.u64(),
            chunk: f.u32(),
        },
        kind::ACCOUNT_SIGN_IN => AccountSignIn {
            name: f.string("name")?,
            password: f.string("password")?.into(),
        },
        kind::PASSWORD_CHANGE => PasswordChange {
            session: f.u64(),
            old: f.string("old password")?.into(),
            new: f.string("new password")?.into(),
        },
        kind::PASSWORD_CHANGED => PasswordChanged { user: f.u64() },
        other => return Err(DecodeError::UnknownType(other)),
    })
}

fn be16_or_zero(b: &[u8]) -> u16 {
    if b.len() >= 2 {
        be16(b, 0) as u16
    } else {
        0
    }
}

/// Decodes the packet at the front of `buf`, if it is whole, and returns it
/// with the number of bytes it took. Copies only the packet's own bytes.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, DecodeError> {
    match frame_len(buf)? {
        None => Ok(None),
        Some(n) => Ok(Some((parse(Bytes::copy_from_slice(&buf[..n]))?, n))),
    }
}

/// Splits the packet at the front of `buf` off and decodes it, without
/// copying its blobs.
pub fn decode_from(buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
    match frame_len(buf)? {
        None => Ok(None),
        Some(n) => parse(buf.split_to(n).freeze()).map(Some),
    }
}

/// [`decode_from`] for a server reading a client's stream: a packet type
/// that only servers send is refused from its first two bytes, so its body
/// (up to 64 KiB of list or text) is never buffered.
pub fn decode_request_from(buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
    if buf.len() >= 2 {
        let t = be16(buf, 0) as u16;
        if kind::sent_by_server(t) {
            return Err(DecodeError::ServerOnly {
                kind: t,
                packet: Packet::kind_name(t),
            });
        }
    }
    decode_from(buf)
}

/// An incremental decoder for a stream that arrives in pieces of any size
/// (TCP reads, WebSocket messages).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole packet, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable; the caller should close it.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        decode_from(&mut self.buf)
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
