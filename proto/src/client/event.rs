//! What the client core tells its shell.

use bytes::Bytes;

use crate::error_code::ErrorCode;

/// A shell-chosen handle for a file transfer, returned when it starts.
pub type TransferId = u64;

/// Something that happened, for the shell to show or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session is open (new, or resumed on a new connection).
    SignedIn {
        /// The user number.
        user: u64,
        /// The session number, worth keeping to resume later.
        session: u64,
        /// Whether an existing session was resumed.
        resumed: bool,
    },
    /// Signing in failed (for example the name is in use or invalid).
    SignInFailed {
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// A session could not be resumed; the core signs in again by name.
    SessionLost,
    /// The password was changed (or set: the name is now protected).
    PasswordChanged {
        /// The user.
        user: u64,
    },
    /// Changing the password failed (for example the old one was wrong).
    PasswordChangeFailed {
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// The server ended the connection or session (expiry, shutdown, the
    /// session moved elsewhere). The shell should close the connection.
    Disconnected {
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// The users online now.
    Users(Vec<u64>),
    /// A user's name.
    UserName {
        /// The user.
        user: u64,
        /// The name.
        name: String,
    },
    /// Every complete file.
    Files(Vec<u64>),
    /// A file's name and size.
    FileInfo {
        /// The file.
        file: u64,
        /// Its size in bytes.
        size: u32,
        /// Its name.
        name: String,
    },
    /// The server stored an outgoing message (direct or broadcast).
    MessageSent {
        /// The number [`super::Client::send_message`] returned.
        message: u64,
    },
    /// The server refused an outgoing message; it is not retried.
    MessageFailed {
        /// The message number.
        message: u64,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// A message arrived. The core has acknowledged it; a redelivery of the
    /// same number is acknowledged again but not reported twice.
    Incoming {
        /// The sender.
        from: u64,
        /// The server's delivery number.
        message: u64,
        /// Whether it was a broadcast.
        broadcast: bool,
        /// The body.
        body: Bytes,
    },
    /// A transfer has its server transaction and file number.
    TransferStarted {
        /// The transfer.
        transfer: TransferId,
        /// The file.
        file: u64,
        /// The file's size in bytes.
        size: u32,
    },
    /// An upload started with [`crate::Client::upload_supplied`] wants the
    /// file's bytes from `offset`, `len` of them, through
    /// [`crate::Client::supply_upload`].
    UploadWants {
        /// The transfer.
        transfer: TransferId,
        /// Where the bytes start in the file.
        offset: u64,
        /// How many.
        len: u64,
    },
    /// Downloaded bytes, to be written at `offset`. Chunks arrive in order.
    DownloadData {
        /// The transfer.
        transfer: TransferId,
        /// Where the bytes go in the file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Bytes acknowledged so far (uploads) or received (downloads).
    TransferProgress {
        /// The transfer.
        transfer: TransferId,
        /// Bytes done.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A transfer finished: every chunk is stored (upload) or received (download).
    TransferComplete {
        /// The transfer.
        transfer: TransferId,
        /// The file.
        file: u64,
    },
    /// A transfer failed and was dropped.
    TransferFailed {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        code: ErrorCode,
        /// The explanation.
        text: String,
    },
    /// An error the core could not tie to one of its operations.
    ServerError {
        /// The request type it answers.
        request_type: u16,
        /// Why.
        code: ErrorCode,
        /// The subject number.
        subject: u64,
        /// The server's explanation.
        text: String,
    },
}
