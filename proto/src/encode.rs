//! Writing packets as bytes.

use bytes::BufMut;
use thiserror::Error;

use crate::packet::Packet;

/// A packet that cannot be written because a field is longer than its
/// length field can describe. Nothing is written in that case.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} of {packet} holds {len} items; the format allows at most {max}")]
pub struct EncodeError {
    /// The packet type's name.
    pub packet: &'static str,
    /// The field that is too long.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The most the format can describe.
    pub max: usize,
}

const U16_MAX: usize = u16::MAX as usize;

impl Packet {
    /// The number of bytes [`Packet::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        use Packet::*;
        match self {
            SessionRequest { name } => 4 + name.len(),
            SessionCookie { .. } => 18,
            Error { text, .. } => 16 + text.len(),
            SessionPreserve { .. }
            | UsersRequest { .. }
            | MessageResponse { .. }
            | BroadcastResponse { .. }
            | IncomingMessageAck { .. }
            | FilesRequest { .. } => 10,
            UsersResponse { users: list } | FilesResponse { files: list } => 4 + 8 * list.len(),
            UserDataRequest { .. }
            | FileDownloadRequest { .. }
            | FileDownloadResponse { .. }
            | FileDataRequest { .. }
            | FileUploadResponse { .. } => 18,
            UserDataResponse { name, .. } => 12 + name.len(),
            MessageRequest { body, .. } => 28 + body.len(),
            BroadcastRequest { body, .. } | IncomingMessage { body, .. } => 20 + body.len(),
            DownloadChunkRequest { .. } | UploadChunkResponse { .. } => 14,
            DownloadChunkResponse { data, .. } | UploadChunkRequest { data, .. } => 16 + data.len(),
            FileDataResponse { name, .. } => 16 + name.len(),
            FileUploadRequest { name, .. } => 16 + name.len(),
            AccountSignIn { name, password } => 6 + name.len() + password.len(),
            PasswordChange { old, new, .. } => 14 + old.len() + new.len(),
            PasswordChanged { .. } => 10,
        }
    }

    /// Checks that every variable field fits its length field.
    fn check_lengths(&self) -> Result<(), EncodeError> {
        use Packet::*;
        let (field, len) = match self {
            SessionRequest { name } | UserDataResponse { name, .. } => ("name", name.len()),
            FileDataResponse { name, .. } | FileUploadRequest { name, .. } => ("name", name.len()),
            Error { text, .. } => ("text", text.len()),
            UsersResponse { users } => ("users", users.len()),
            FilesResponse { files } => ("files", files.len()),
            MessageRequest { body, .. }
            | BroadcastRequest { body, .. }
            | IncomingMessage { body, .. } => ("body", body.len()),
            DownloadChunkResponse { data, .. } | UploadChunkRequest { data, .. } => {
                ("data", data.len())
            }
            AccountSignIn { name, password } => {
                if name.len() > U16_MAX {
                    ("name", name.len())
                } else {
                    ("password", password.len())
                }
            }
            PasswordChange { old, new, .. } => {
                if old.len() > U16_MAX {
                    ("old password", old.len())
                } else {
                    ("new password", new.len())
                }
            }
            _ => return Ok(()),
        };
        if len > U16_MAX {
            return Err(EncodeError {
                packet: Packet::kind_name(self.kind()),
                field,
                len,
                max: U16_MAX,
            });
        }
        Ok(())
    }

    /// Appends the packet's bytes to `buf`.
    ///
    /// Fails, writing nothing, when a variable field is too long for its
    /// 2-byte length. Chunk data longer than 256 bytes is written (the
    /// decoder on the other side refuses it), so tests can produce it.
    pub fn encode<B: BufMut>(&self, buf: &mut B) -> Result<(), EncodeError> {
        use Packet::*;
        self.check_lengths()?;
        buf.put_u16(self.kind());
        // The casts below cannot truncate: check_lengths bounded every length.
        match self {
            SessionRequest { name } => put_str(buf, name),
            SessionCookie { user, session } => {
                buf.put_u64(*user);
                buf.put_u64(*session);
            }
            Error {
                request_type,
                code,
                subject,
                text,
            } => {
                buf.put_u16(*request_type);
                buf.put_u16(code.to_u16());
                buf.put_u64(*subject);
                put_str(buf, text);
            }
            SessionPreserve { session } | UsersRequest { session } | FilesRequest { session } => {
                buf.put_u64(*session)
            }
            UsersResponse { users: list } | FilesResponse { files: list } => {
                buf.put_u16(list.len() as u16);
                for n in list {
                    buf.put_u64(*n);
                }
            }
            UserDataRequest { session, user: n }
            | FileDownloadRequest { session, file: n }
            | FileDataRequest { session, file: n } => {
                buf.put_u64(*session);
                buf.put_u64(*n);
            }
            UserDataResponse { user, name } => {
                buf.put_u64(*user);
                put_str(buf, name);
            }
            MessageRequest {
                session,
                to,
                message,
                body,
            } => {
                buf.put_u64(*session);
                buf.put_u64(*to);
                buf.put_u64(*message);
                put_blob(buf, body);
            }
            MessageResponse { message }
            | BroadcastResponse { message }
            | IncomingMessageAck { message } => buf.put_u64(*message),
            BroadcastRequest {
                session: a,
                message: b,
                body,
            }
            | IncomingMessage {
                from: a,
                message: b,
                body,
            } => {
                buf.put_u64(*a);
                buf.put_u64(*b);
                put_blob(buf, body);
            }
            FileDownloadResponse { file, transaction }
            | FileUploadResponse { file, transaction } => {
                buf.put_u64(*file);
                buf.put_u64(*transaction);
            }
            DownloadChunkRequest { transaction, chunk }
            | UploadChunkResponse { transaction, chunk } => {
                buf.put_u64(*transaction);
                buf.put_u32(*chunk);
            }
            DownloadChunkResponse {
                transaction,
                chunk,
                data,
            }
            | UploadChunkRequest {
                transaction,
                chunk,
                data,
            } => {
                buf.put_u64(*transaction);
                buf.put_u32(*chunk);
                put_blob(buf, data);
            }
            FileDataResponse {
                file: n,
                size,
                name,
            }
            | FileUploadRequest {
                session: n,
                size,
                name,
            } => {
                buf.put_u64(*n);
                buf.put_u32(*size);
                put_str(buf, name);
            }
            AccountSignIn { name, password } => {
                put_str(buf, name);
                put_str(buf, password.expose());
            }
            PasswordChange { session, old, new } => {
                buf.put_u64(*session);
                put_str(buf, old.expose());
                put_str(buf, new.expose());
            }
            PasswordChanged { user } => buf.put_u64(*user),
        }
        Ok(())
    }

    /// The packet's bytes in a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }
}

fn put_str<B: BufMut>(buf: &mut B, s: &str) {
    put_blob(buf, s.as_bytes());
}

fn put_blob<B: BufMut>(buf: &mut B, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}
