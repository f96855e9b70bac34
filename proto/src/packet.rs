//! The packets of the protocol, one enum variant per packet type.
//!
//! Field names follow `docs/PROTOCOL.md`. Blobs are [`Bytes`] so a decoded
//! packet can share the receive buffer instead of copying it.

use bytes::Bytes;

use crate::error_code::ErrorCode;
use crate::password::Password;

/// Numeric packet types, as they appear in the first two bytes of a packet.
pub mod kind {
    /// SESSION REQUEST (client → server).
    pub const SESSION_REQUEST: u16 = 1;
    /// SESSION COOKIE (server → client).
    pub const SESSION_COOKIE: u16 = 2;
    /// ERROR (server → client).
    pub const ERROR: u16 = 3;
    /// SESSION PRESERVE (client → server).
    pub const SESSION_PRESERVE: u16 = 4;
    /// USERS REQUEST (client → server).
    pub const USERS_REQUEST: u16 = 5;
    /// USERS RESPONSE (server → client).
    pub const USERS_RESPONSE: u16 = 6;
    /// USER DATA REQUEST (client → server).
    pub const USER_DATA_REQUEST: u16 = 7;
    /// USER DATA RESPONSE (server → client).
    pub const USER_DATA_RESPONSE: u16 = 8;
    /// MESSAGE REQUEST (client → server).
    pub const MESSAGE_REQUEST: u16 = 9;
    /// MESSAGE RESPONSE (server → client).
    pub const MESSAGE_RESPONSE: u16 = 10;
    /// BROADCAST REQUEST (client → server).
    pub const BROADCAST_REQUEST: u16 = 11;
    /// BROADCAST RESPONSE (server → client).
    pub const BROADCAST_RESPONSE: u16 = 12;
    /// INCOMING MESSAGE REQUEST (server → client).
    pub const INCOMING_MESSAGE: u16 = 13;
    /// INCOMING MESSAGE RESPONSE (client → server).
    pub const INCOMING_MESSAGE_ACK: u16 = 14;
    /// FILE DOWNLOAD REQUEST (client → server).
    pub const FILE_DOWNLOAD_REQUEST: u16 = 15;
    /// FILE DOWNLOAD RESPONSE (server → client).
    pub const FILE_DOWNLOAD_RESPONSE: u16 = 16;
    /// DOWNLOAD CHUNK REQUEST (client → server).
    pub const DOWNLOAD_CHUNK_REQUEST: u16 = 17;
    /// DOWNLOAD CHUNK RESPONSE (server → client).
    pub const DOWNLOAD_CHUNK_RESPONSE: u16 = 18;
    /// FILES REQUEST (client → server).
    pub const FILES_REQUEST: u16 = 19;
    /// FILES RESPONSE (server → client).
    pub const FILES_RESPONSE: u16 = 20;
    /// FILE DATA REQUEST (client → server).
    pub const FILE_DATA_REQUEST: u16 = 21;
    /// FILE DATA RESPONSE (server → client).
    pub const FILE_DATA_RESPONSE: u16 = 22;
    /// FILE UPLOAD REQUEST (client → server); renumbered from the seed's 15.
    pub const FILE_UPLOAD_REQUEST: u16 = 23;
    /// FILE UPLOAD RESPONSE (server → client); renumbered from the seed's 16.
    pub const FILE_UPLOAD_RESPONSE: u16 = 24;
    /// UPLOAD CHUNK REQUEST (client → server); renumbered from the seed's 17.
    pub const UPLOAD_CHUNK_REQUEST: u16 = 25;
    /// UPLOAD CHUNK RESPONSE (server → client); renumbered from the seed's 18.
    pub const UPLOAD_CHUNK_RESPONSE: u16 = 26;
    /// ACCOUNT SIGN IN (client → server): sign in with a password.
    pub const ACCOUNT_SIGN_IN: u16 = 27;
    /// PASSWORD CHANGE (client → server).
    pub const PASSWORD_CHANGE: u16 = 28;
    /// PASSWORD CHANGED (server → client).
    pub const PASSWORD_CHANGED: u16 = 29;

    /// Whether only a server sends packets of type `t`: a server refuses
    /// them from a client as soon as it has read their type.
    pub const fn sent_by_server(t: u16) -> bool {
        matches!(
            t,
            SESSION_COOKIE
                | ERROR
                | USERS_RESPONSE
                | USER_DATA_RESPONSE
                | MESSAGE_RESPONSE
                | BROADCAST_RESPONSE
                | INCOMING_MESSAGE
                | FILE_DOWNLOAD_RESPONSE
                | DOWNLOAD_CHUNK_RESPONSE
                | FILES_RESPONSE
                | FILE_DATA_RESPONSE
                | FILE_UPLOAD_RESPONSE
                | UPLOAD_CHUNK_RESPONSE
                | PASSWORD_CHANGED
        )
    }
}

/// One packet of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// 1: ask for a session under a user name.
    SessionRequest {
        /// The user name (see [`crate::limits::validate_user_name`]).
        name: String,
    },
    /// 2: a session was opened or preserved.
    SessionCookie {
        /// The user number, stable for a name forever.
        user: u64,
        /// The session number to quote in later requests.
        session: u64,
    },
    /// 3: a request failed.
    Error {
        /// The type of the packet that failed, 0 if it could not be read.
        request_type: u16,
        /// What went wrong.
        code: ErrorCode,
        /// The number the error is about (message, transaction, file, user), 0 if none.
        subject: u64,
        /// A human-readable explanation.
        text: String,
    },
    /// 4: keep a session alive, or resume it on a new connection.
    SessionPreserve {
        /// The session to preserve.
        session: u64,
    },
    /// 5: ask who is online.
    UsersRequest {
        /// The caller's session.
        session: u64,
    },
    /// 6: the users online now.
    UsersResponse {
        /// Their user numbers.
        users: Vec<u64>,
    },
    /// 7: ask for a user's name.
    UserDataRequest {
        /// The caller's session.
        session: u64,
        /// The user asked about.
        user: u64,
    },
    /// 8: a user's name.
    UserDataResponse {
        /// The user.
        user: u64,
        /// The user's name.
        name: String,
    },
    /// 9: send a direct message.
    MessageRequest {
        /// The caller's session.
        session: u64,
        /// The recipient's user number.
        to: u64,
        /// The sender's number for this message, echoed in the acknowledgement.
        message: u64,
        /// The message body, opaque bytes.
        body: Bytes,
    },
    /// 10: a direct message was stored durably.
    MessageResponse {
        /// The sender's message number.
        message: u64,
    },
    /// 11: send a message to everyone online.
    BroadcastRequest {
        /// The caller's session.
        session: u64,
        /// The sender's number for this message.
        message: u64,
        /// The message body.
        body: Bytes,
    },
    /// 12: a broadcast was accepted.
    BroadcastResponse {
        /// The sender's message number.
        message: u64,
    },
    /// 13: a message for the client.
    IncomingMessage {
        /// The sender's user number.
        from: u64,
        /// The server's number for this delivery; bit 63 marks a broadcast.
        message: u64,
        /// The message body.
        body: Bytes,
    },
    /// 14: the client has the message.
    IncomingMessageAck {
        /// The number from [`Packet::IncomingMessage`].
        message: u64,
    },
    /// 15: open a download transaction for a file.
    FileDownloadRequest {
        /// The caller's session.
        session: u64,
        /// The file to download.
        file: u64,
    },
    /// 16: a download transaction was opened.
    FileDownloadResponse {
        /// The file.
        file: u64,
        /// The transaction to quote in chunk requests.
        transaction: u64,
    },
    /// 17: ask for one chunk of a download.
    DownloadChunkRequest {
        /// The download transaction.
        transaction: u64,
        /// The chunk number, from 0.
        chunk: u32,
    },
    /// 18: one chunk of a download.
    DownloadChunkResponse {
        /// The download transaction.
        transaction: u64,
        /// The chunk number.
        chunk: u32,
        /// The chunk's bytes: 256, fewer for the last.
        data: Bytes,
    },
    /// 19: ask for the list of files.
    FilesRequest {
        /// The caller's session.
        session: u64,
    },
    /// 20: every complete file.
    FilesResponse {
        /// Their file numbers.
        files: Vec<u64>,
    },
    /// 21: ask for a file's name and size.
    FileDataRequest {
        /// The caller's session.
        session: u64,
        /// The file.
        file: u64,
    },
    /// 22: a file's name and size.
    FileDataResponse {
        /// The file.
        file: u64,
        /// Its size in bytes.
        size: u32,
        /// Its name, a label only.
        name: String,
    },
    /// 23: start uploading a file.
    FileUploadRequest {
        /// The caller's session.
        session: u64,
        /// The file's size in bytes.
        size: u32,
        /// The file's name (see [`crate::limits::validate_file_name`]).
        name: String,
    },
    /// 24: an upload transaction was opened.
    FileUploadResponse {
        /// The number the file will have.
        file: u64,
        /// The transaction to quote in chunks.
        transaction: u64,
    },
    /// 25: one chunk of an upload.
    UploadChunkRequest {
        /// The upload transaction.
        transaction: u64,
        /// The chunk number, from 0.
        chunk: u32,
        /// The chunk's bytes: 256, fewer for the last.
        data: Bytes,
    },
    /// 26: a chunk of an upload was stored.
    UploadChunkResponse {
        /// The upload transaction.
        transaction: u64,
        /// The chunk number.
        chunk: u32,
    },
    /// 27: sign in under a name protected by a password (claiming the name
    /// first, where the server allows it).
    AccountSignIn {
        /// The user name (see [`crate::limits::validate_user_name`]).
        name: String,
        /// The password (see [`crate::limits::validate_password`]).
        password: Password,
    },
    /// 28: change the signed-in user's password, or set a first one.
    PasswordChange {
        /// The caller's session.
        session: u64,
        /// The current password; empty for a name with none yet.
        old: Password,
        /// The new password.
        new: Password,
    },
    /// 29: the password was changed.
    PasswordChanged {
        /// The user whose password it is.
        user: u64,
    },
}

impl Packet {
    /// The packet's numeric type (see [`kind`]).
    pub fn kind(&self) -> u16 {
        use Packet::*;
        match self {
            SessionRequest { .. } => kind::SESSION_REQUEST,
            SessionCookie { .. } => kind::SESSION_COOKIE,
            Error { .. } => kind::ERROR,
            SessionPreserve { .. } => kind::SESSION_PRESERVE,
            UsersRequest { .. } => kind::USERS_REQUEST,
            UsersResponse { .. } => kind::USERS_RESPONSE,
            UserDataRequest { .. } => kind::USER_DATA_REQUEST,
            UserDataResponse { .. } => kind::USER_DATA_RESPONSE,
            MessageRequest { .. } => kind::MESSAGE_REQUEST,
            MessageResponse { .. } => kind::MESSAGE_RESPONSE,
            BroadcastRequest { .. } => kind::BROADCAST_REQUEST,
            BroadcastResponse { .. } => kind::BROADCAST_RESPONSE,
            IncomingMessage { .. } => kind::INCOMING_MESSAGE,
            IncomingMessageAck { .. } => kind::INCOMING_MESSAGE_ACK,
            FileDownloadRequest { .. } => kind::FILE_DOWNLOAD_REQUEST,
            FileDownloadResponse { .. } => kind::FILE_DOWNLOAD_RESPONSE,
            DownloadChunkRequest { .. } => kind::DOWNLOAD_CHUNK_REQUEST,
            DownloadChunkResponse { .. } => kind::DOWNLOAD_CHUNK_RESPONSE,
            FilesRequest { .. } => kind::FILES_REQUEST,
            FilesResponse { .. } => kind::FILES_RESPONSE,
            FileDataRequest { .. } => kind::FILE_DATA_REQUEST,
            FileDataResponse { .. } => kind::FILE_DATA_RESPONSE,
            FileUploadRequest { .. } => kind::FILE_UPLOAD_REQUEST,
            FileUploadResponse { .. } => kind::FILE_UPLOAD_RESPONSE,
            UploadChunkRequest { .. } => kind::UPLOAD_CHUNK_REQUEST,
            UploadChunkResponse { .. } => kind::UPLOAD_CHUNK_RESPONSE,
            AccountSignIn { .. } => kind::ACCOUNT_SIGN_IN,
            PasswordChange { .. } => kind::PASSWORD_CHANGE,
            PasswordChanged { .. } => kind::PASSWORD_CHANGED,
        }
    }

    /// The session number the packet quotes, for the client → server
    /// packets that carry one.
    pub fn session(&self) -> Option<u64> {
        use Packet::*;
        match self {
            SessionPreserve { session }
            | UsersRequest { session }
            | UserDataRequest { session, .. }
            | MessageRequest { session, .. }
            | BroadcastRequest { session, .. }
            | FileDownloadRequest { session, .. }
            | FilesRequest { session }
            | FileDataRequest { session, .. }
            | FileUploadRequest { session, .. }
            | PasswordChange { session, .. } => Some(*session),
            _ => None,
        }
    }

    /// A short human name of a packet type, for logs and error texts.
    pub fn kind_name(kind: u16) -> &'static str {
        match kind {
            kind::SESSION_REQUEST => "SESSION REQUEST",
            kind::SESSION_COOKIE => "SESSION COOKIE",
            kind::ERROR => "ERROR",
            kind::SESSION_PRESERVE => "SESSION PRESERVE",
            kind::USERS_REQUEST => "USERS REQUEST",
            kind::USERS_RESPONSE => "USERS RESPONSE",
            kind::USER_DATA_REQUEST => "USER DATA REQUEST",
            kind::USER_DATA_RESPONSE => "USER DATA RESPONSE",
            kind::MESSAGE_REQUEST => "MESSAGE REQUEST",
            kind::MESSAGE_RESPONSE => "MESSAGE RESPONSE",
            kind::BROADCAST_REQUEST => "BROADCAST REQUEST",
            kind::BROADCAST_RESPONSE => "BROADCAST RESPONSE",
            kind::INCOMING_MESSAGE => "INCOMING MESSAGE REQUEST",
            kind::INCOMING_MESSAGE_ACK => "INCOMING MESSAGE RESPONSE",
            kind::FILE_DOWNLOAD_REQUEST => "FILE DOWNLOAD REQUEST",
            kind::FILE_DOWNLOAD_RESPONSE => "FILE DOWNLOAD RESPONSE",
            kind::DOWNLOAD_CHUNK_REQUEST => "DOWNLOAD CHUNK REQUEST",
            kind::DOWNLOAD_CHUNK_RESPONSE => "DOWNLOAD CHUNK RESPONSE",
            kind::FILES_REQUEST => "FILES REQUEST",
            kind::FILES_RESPONSE => "FILES RESPONSE",
            kind::FILE_DATA_REQUEST => "FILE DATA REQUEST",
            kind::FILE_DATA_RESPONSE => "FILE DATA RESPONSE",
            kind::FILE_UPLOAD_REQUEST => "FILE UPLOAD REQUEST",
            kind::FILE_UPLOAD_RESPONSE => "FILE UPLOAD RESPONSE",
            kind::UPLOAD_CHUNK_REQUEST => "UPLOAD CHUNK REQUEST",
            kind::UPLOAD_CHUNK_RESPONSE => "UPLOAD CHUNK RESPONSE",
            kind::ACCOUNT_SIGN_IN => "ACCOUNT SIGN IN",
            kind::PASSWORD_CHANGE => "PASSWORD CHANGE",
            kind::PASSWORD_CHANGED => "PASSWORD CHANGED",
            _ => "unknown packet",
        }
    }
}
