//! The sans-IO client core.
//!
//! [`Client`] never touches a socket or a clock. Its shell (the web app's
//! WebSocket, the CLI's TCP stream) feeds it received bytes and the current
//! time, and drains what it hands back: bytes to send
//! ([`Client::poll_transmit`]), things that happened ([`Client::poll_event`])
//! and when to wake it next ([`Client::poll_timeout`]). Tests drive it in
//! memory with simulated time.
//!
//! It signs in or resumes a session, keeps the session alive with SESSION
//! PRESERVE when idle, numbers outgoing messages and keeps them until the
//! server acknowledges them (resending them after a reconnect), acknowledges
//! incoming messages once, and runs windowed chunk transfers.

mod event;
mod transfer;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::decode::{DecodeError, Decoder};
use crate::error_code::ErrorCode;
use crate::limits::{
    validate_file_name, validate_password, validate_user_name, NameError, PasswordError,
    BROADCAST_BIT,
};
use crate::packet::{kind, Packet};
use crate::password::Password;

pub use event::{Event, TransferId};
use transfer::Transfer;

/// Tunables of the client core.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Send SESSION PRESERVE after this long without sending anything. The
    /// server ends sessions after 30 s of silence by default.
    pub keepalive: Duration,
    /// Chunk requests in flight per transfer.
    pub window: u32,
    /// The first outgoing message number. The server stores a (sender,
    /// number) pair once, so numbers must not repeat for a user across
    /// sessions: seed this from the wall clock or a random source.
    pub first_message_number: u64,
    /// How many incoming delivery numbers are remembered to drop redeliveries.
    pub remembered_incoming: usize,
    /// Acknowledge incoming messages as soon as they are decoded. Shells
    /// that must show or store a message first turn this off and call
    /// [`Client::acknowledge`]; a message never acknowledged stays queued
    /// on the server for the user's next session.
    pub acknowledge_incoming: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(10),
            window: 64,
            first_message_number: 1,
            remembered_incoming: 4096,
            acknowledge_incoming: true,
        }
    }
}

/// An operation the core refused before sending anything.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The operation needs a session.
    #[error("not signed in")]
    NotSignedIn,
    /// The name breaks the naming rules.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// A message body is longer than the 65535 bytes the format allows.
    #[error("the message is {0} bytes long; at most 65535 are allowed")]
    MessageTooLong(usize),
    /// A file is larger than the 4 GiB - 1 the format allows.
    #[error("the file is {0} bytes long; at most 4294967295 are allowed")]
    FileTooLarge(u64),
    /// A password breaks the length rule.
    #[error("{0}")]
    InvalidPassword(#[from] PasswordError),
}

/// A message sent and not yet acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient; `None` for a broadcast.
    pub to: Option<u64>,
    /// The body.
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No transport.
    Offline,
    /// Transport up, SESSION REQUEST or PRESERVE sent, no answer yet.
    Opening { resuming: bool },
    /// Session open on this transport.
    SignedIn,
}

/// The protocol state of one chat client. See the module documentation.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    phase: Phase,
    /// Whether the shell has a transport up (between `connected` and
    /// `disconnected`), whatever the phase.
    transport_up: bool,
    name: Option<String>,
    /// The password to sign in with, kept in memory only, to sign in again
    /// when a session is lost.
    password: Option<Password>,
    /// A PASSWORD CHANGE awaiting its answer: the new password. Kept when
    /// the connection drops, since the change may have gone through: the
    /// next sign-in by password tells.
    changing_to: Option<Password>,
    /// The current sign-in uses the password of a change whose answer was
    /// lost, after the old one was refused.
    trying_new: bool,
    user: Option<u64>,
    session: Option<u64>,
    now: Duration,
    last_sent: Duration,
    decoder: Decoder,
    out: BytesMut,
    events: VecDeque<Event>,
    next_message: u64,
    outbox: BTreeMap<u64, Outgoing>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    next_transfer: TransferId,
    transfers: BTreeMap<TransferId, Transfer>,
    /// Uploads whose FILE UPLOAD REQUEST awaits its answer, oldest first:
    /// the answer carries no request key, and the server answers in order.
    uploads_opening: VecDeque<TransferId>,
}

impl Client {
    /// A client with no transport and no session yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            next_message: config.first_message_number,
            config,
            phase: Phase::Offline,
            transport_up: false,
            name: None,
            password: None,
            changing_to: None,
            trying_new: false,
            user: None,
            session: None,
            now: Duration::ZERO,
            last_sent: Duration::ZERO,
            decoder: Decoder::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            outbox: BTreeMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            next_transfer: 1,
            transfers: BTreeMap::new(),
            uploads_opening: VecDeque::new(),
        }
    }

    // ----- state -----

    /// The session number, once signed in (keep it to resume later).
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// The user number, once signed in.
    pub fn user(&self) -> Option<u64> {
        self.user
    }

    /// The name given to [`Client::sign_in`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether a session is open on the current transport.
    pub fn is_signed_in(&self) -> bool {
        self.phase == Phase::SignedIn
    }

    /// Messages sent and not yet acknowledged, by message number.
    pub fn unacknowledged(&self) -> &BTreeMap<u64, Outgoing> {
        &self.outbox
    }

    /// The number the next outgoing message gets.
    pub fn next_message_number(&self) -> u64 {
        self.next_message
    }

    /// Transfers not yet finished.
    pub fn active_transfers(&self) -> usize {
        self.transfers.len()
    }

    // ----- transport -----

    /// Sets the name to sign in with (no password: SESSION REQUEST); signs
    /// in now if a transport is up.
    pub fn sign_in(&mut self, name: &str) -> Result<(), ClientError> {
        validate_user_name(name)?;
        self.name = Some(name.to_owned());
        self.password = None;
        self.sign_in_now();
        Ok(())
    }

    /// Sets the name and password to sign in with (ACCOUNT SIGN IN: the
    /// name is claimed if the server allows and no one has); signs in now
    /// if a transport is up. The password stays in memory, to sign in
    /// again if the session is lost.
    pub fn sign_in_with_password(&mut self, name: &str, password: &str) -> Result<(), ClientError> {
        validate_user_name(name)?;
        validate_password(password)?;
        self.name = Some(name.to_owned());
        self.password = Some(Password::from(password));
        self.sign_in_now();
        Ok(())
    }

    /// Signs in on an idle transport; otherwise `connected` (or the answer
    /// to a resume) does it.
    fn sign_in_now(&mut self) {
        if !self.transport_up || self.phase != Phase::Offline || self.session.is_some() {
            return;
        }
        if let Some(packet) = self.sign_in_packet() {
            self.phase = Phase::Opening { resuming: false };
            self.send(packet);
        }
    }

    /// SESSION REQUEST, or ACCOUNT SIGN IN when there is a password.
    fn sign_in_packet(&self) -> Option<Packet> {
        let name = self.name.clone()?;
        Some(match &self.password {
            Some(password) => Packet::AccountSignIn {
                name,
                password: password.clone(),
            },
            None => Packet::SessionRequest { name },
        })
    }

    /// Changes the signed-in user's password; `old` is empty for a name
    /// that has none yet (which claims it). Answered by
    /// [`Event::PasswordChanged`] or [`Event::PasswordChangeFailed`].
    pub fn change_password(&mut self, old: &str, new: &str) -> Result<(), ClientError> {
        validate_password(new)?;
        let session = self.signed_in_session()?;
        self.changing_to = Some(Password::from(new));
        self.send(Packet::PasswordChange {
            session,
            old: Password::from(old),
            new: Password::from(new),
        });
        Ok(())
    }

    /// Remembers a session (for example from before a page reload) to
    /// resume on the next transport instead of signing in anew.
    pub fn resume_session(&mut self, session: u64) {
        self.session = Some(session);
    }

    /// The shell opened a transport: resume the session or sign in.
    pub fn connected(&mut self, now: Duration) {
        self.now = now;
        self.decoder = Decoder::new();
        self.out.clear();
        self.phase = Phase::Offline;
        self.transport_up = true;
        if let Some(session) = self.session {
            self.phase = Phase::Opening { resuming: true };
            self.send(Packet::SessionPreserve { session });
        } else if let Some(packet) = self.sign_in_packet() {
            self.phase = Phase::Opening { resuming: false };
            self.send(packet);
        }
    }

    /// The transport closed. Unacknowledged messages and unfinished
    /// transfers are kept and resumed on the next transport.
    pub fn disconnected(&mut self) {
        self.phase = Phase::Offline;
        self.transport_up = false;
        self.out.clear();
        self.uploads_opening.clear();
        for t in self.transfers.values_mut() {
            t.connection_lost();
        }
    }

    /// Bytes received from the transport. An error means the stream is
    /// corrupt: the shell should close the transport.
    pub fn handle_input(&mut self, now: Duration, bytes: &[u8]) -> Result<(), DecodeError> {
        self.now = now;
        self.decoder.feed(bytes);
        let mut touched = Vec::new();
        while let Some(packet) = self.decoder.next_packet()? {
            if let Some(t) = self.handle_packet(packet) {
                if !touched.contains(&t) {
                    touched.push(t);
                }
            }
        }
        // One progress event per transfer per input keeps a fast transfer
        // from flooding the shell with events.
        for id in touched {
            if let Some(t) = self.transfers.get(&id) {
                self.events.push_back(Event::TransferProgress {
                    transfer: id,
                    done: t.done_bytes(),
                    total: u64::from(t.size.unwrap_or(0)),
                });
            }
        }
        Ok(())
    }

    /// When the core next wants [`Client::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        (self.phase == Phase::SignedIn).then(|| self.last_sent + self.config.keepalive)
    }

    /// Time passed: sends SESSION PRESERVE if the session was idle too long.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        if let (Phase::SignedIn, Some(session)) = (self.phase, self.session) {
            if now >= self.last_sent + self.config.keepalive {
                self.send(Packet::SessionPreserve { session });
            }
        }
    }

    /// Bytes to send on the transport, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- operations -----

    /// Sends a direct message and returns its number. Queued until signed in.
    pub fn send_message(&mut self, to: u64, body: Bytes) -> Result<u64, ClientError> {
        self.queue_message(Some(to), body)
    }

    /// Sends a message to everyone online and returns its number.
    pub fn broadcast(&mut self, body: Bytes) -> Result<u64, ClientError> {
        self.queue_message(None, body)
    }

    /// Asks who is online; answered by [`Event::Users`].
    pub fn request_users(&mut self) -> Result<(), ClientError> {
        let session = self.signed_in_session()?;
        self.send(Packet::UsersRequest { session });
        Ok(())
    }

    /// Asks for a user's name; answered by [`Event::UserName`].
    pub fn request_user(&mut self, user: u64) -> Result<(), ClientError> {
        let session = self.signed_in_session()?;
        self.send(Packet::UserDataRequest { session, user });
        Ok(())
    }

    /// Asks for the file list; answered by [`Event::Files`].
    pub fn request_files(&mut self) -> Result<(), ClientError> {
        let session = self.signed_in_session()?;
        self.send(Packet::FilesRequest { session });
        Ok(())
    }

    /// Asks for a file's name and size; answered by [`Event::FileInfo`].
    pub fn request_file(&mut self, file: u64) -> Result<(), ClientError> {
        let session = self.signed_in_session()?;
        self.send(Packet::FileDataRequest { session, file });
        Ok(())
    }

    /// Starts uploading `data` as `name`. Queued until signed in.
    pub fn upload(&mut self, name: &str, data: Bytes) -> Result<TransferId, ClientError> {
        validate_file_name(name)?;
        if u32::try_from(data.len()).is_err() {
            return Err(ClientError::FileTooLarge(data.len() as u64));
        }
        let id = self.new_transfer_id();
        self.transfers
            .insert(id, Transfer::upload(id, name.to_owned(), data));
        self.open_transfers();
        Ok(id)
    }

    /// Starts uploading a file of `size` bytes as `name`, whose bytes the
    /// shell supplies as they are wanted ([`Event::UploadWants`], answered
    /// with [`Client::supply_upload`]), so a large file is never held
    /// whole. Queued until signed in.
    pub fn upload_supplied(&mut self, name: &str, size: u64) -> Result<TransferId, ClientError> {
        validate_file_name(name)?;
        let size = u32::try_from(size).map_err(|_| ClientError::FileTooLarge(size))?;
        let id = self.new_transfer_id();
        self.transfers
            .insert(id, Transfer::supplied_upload(id, name.to_owned(), size));
        self.ask_for_upload_bytes(id);
        self.open_transfers();
        Ok(id)
    }

    /// Hands over the bytes of an upload at `offset` that
    /// [`Event::UploadWants`] asked for (in order; several calls may cover
    /// one request). False, and nothing kept, if the transfer is gone or
    /// these are not the bytes it waits for.
    pub fn supply_upload(&mut self, transfer: TransferId, offset: u64, data: &[u8]) -> bool {
        let Some(t) = self.transfers.get_mut(&transfer) else {
            return false;
        };
        if !t.supply(offset, data) {
            return false;
        }
        self.fill(transfer);
        true
    }

    /// Asks the shell for the next bytes of a supplied upload, if it wants any.
    fn ask_for_upload_bytes(&mut self, id: TransferId) {
        let window = self.config.window.max(1);
        if let Some((offset, len)) = self.transfers.get_mut(&id).and_then(|t| t.wants(window)) {
            self.events.push_back(Event::UploadWants {
                transfer: id,
                offset,
                len,
            });
        }
    }

    /// Starts downloading file `file`; its bytes arrive as
    /// [`Event::DownloadData`]. Queued until signed in.
    pub fn download(&mut self, file: u64) -> TransferId {
        let id = self.new_transfer_id();
        self.transfers.insert(id, Transfer::download(id, file));
        self.open_transfers();
        id
    }

    /// Acknowledges an incoming message (see
    /// [`ClientConfig::acknowledge_incoming`]).
    pub fn acknowledge(&mut self, message: u64) {
        if self.phase == Phase::SignedIn {
            self.send(Packet::IncomingMessageAck { message });
        }
    }

    /// Forgets a transfer. The protocol has no cancel packet: the server
    /// drops the transaction when the session ends.
    pub fn cancel(&mut self, transfer: TransferId) -> bool {
        // An upload whose FILE UPLOAD REQUEST is on the wire keeps its place
        // in `uploads_opening`: the server still answers it, and that answer
        // must not be taken for the next upload's.
        self.transfers.remove(&transfer).is_some()
    }

    // ----- internals -----

    fn new_transfer_id(&mut self) -> TransferId {
        let id = self.next_transfer;
        self.next_transfer += 1;
        id
    }

    fn signed_in_session(&self) -> Result<u64, ClientError> {
        match (self.phase, self.session) {
            (Phase::SignedIn, Some(s)) => Ok(s),
            _ => Err(ClientError::NotSignedIn),
        }
    }

    fn queue_message(&mut self, to: Option<u64>, body: Bytes) -> Result<u64, ClientError> {
        if body.len() > usize::from(u16::MAX) {
            return Err(ClientError::MessageTooLong(body.len()));
        }
        let message = self.next_message;
        self.next_message = self.next_message.wrapping_add(1);
        let outgoing = Outgoing { to, body };
        if let Ok(session) = self.signed_in_session() {
            self.send_outgoing(session, message, &outgoing);
        }
        self.outbox.insert(message, outgoing);
        Ok(message)
    }

    fn send_outgoing(&mut self, session: u64, message: u64, o: &Outgoing) {
        let body = o.body.clone();
        self.send(match o.to {
            Some(to) => Packet::MessageRequest {
                session,
                to,
                message,
                body,
            },
            None => Packet::BroadcastRequest {
                session,
                message,
                body,
            },
        });
    }

    fn send(&mut self, packet: Packet) {
        // Every packet the core builds was checked against the format's
        // limits when the operation was accepted.
        if packet.encode(&mut self.out).is_ok() {
            self.last_sent = self.now;
        }
    }

    /// Sends the opening request of every transfer that needs one, and
    /// fills the windows of those that are ready.
    fn open_transfers(&mut self) {
        let Ok(session) = self.signed_in_session() else {
            return;
        };
        let ids: Vec<TransferId> = self.transfers.keys().copied().collect();
        for id in ids {
            let Some(t) = self.transfers.get_mut(&id) else {
                continue;
            };
            if t.transaction.is_some() {
                self.fill(id);
                continue;
            }
            if t.opening {
                continue;
            }
            t.opening = true;
            let packet = match (&t.direction, t.file) {
                (transfer::Direction::Upload { name, .. }, _) => {
                    self.uploads_opening.push_back(id);
                    Packet::FileUploadRequest {
                        session,
                        size: t.size.unwrap_or(0),
                        name: name.clone(),
                    }
                }
                (transfer::Direction::Download, Some(file)) if t.size.is_none() => {
                    Packet::FileDataRequest { session, file }
                }
                (transfer::Direction::Download, Some(file)) => {
                    Packet::FileDownloadRequest { session, file }
                }
                (transfer::Direction::Download, None) => continue,
            };
            self.send(packet);
        }
    }

    /// Sends chunk packets up to the window, and reports completion.
    fn fill(&mut self, id: TransferId) {
        let window = self.config.window.max(1);
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        let (Some(transaction), Some(file)) = (t.transaction, t.file) else {
            return;
        };
        if t.is_complete() {
            self.transfers.remove(&id);
            self.events
                .push_back(Event::TransferComplete { transfer: id, file });
            return;
        }
        let chunks = t.fill_window(window);
        let wants = t.wants(window);
        let packets: Vec<Packet> = chunks
            .into_iter()
            .map(|chunk| match t.upload_chunk(chunk) {
                Some(data) => Packet::UploadChunkRequest {
                    transaction,
                    chunk,
                    data,
                },
                None => Packet::DownloadChunkRequest { transaction, chunk },
            })
            .collect();
        for p in packets {
            self.send(p);
        }
        if let Some((offset, len)) = wants {
            self.events.push_back(Event::UploadWants {
                transfer: id,
                offset,
                len,
            });
        }
    }

    fn fail_transfer(&mut self, id: TransferId, code: ErrorCode, text: String) {
        // `uploads_opening` is left alone: an entry leaves it only when the
        // server answers its request.
        self.transfers.remove(&id);
        self.events.push_back(Event::TransferFailed {
            transfer: id,
            code,
            text,
        });
    }

    /// Whether `transaction` is a download's old transaction, reopened since.
    fn is_retired(&self, transaction: u64) -> bool {
        self.transfers
            .values()
            .any(|t| !t.is_upload() && t.retired == Some(transaction))
    }

    fn transfer_by_transaction(&self, transaction: u64, upload: bool) -> Option<TransferId> {
        self.transfers
            .values()
            .find(|t| t.transaction == Some(transaction) && t.is_upload() == upload)
            .map(|t| t.id)
    }

    fn signed_in(&mut self, user: u64, session: u64, resumed: bool) {
        self.phase = Phase::SignedIn;
        self.user = Some(user);
        self.session = Some(session);
        self.events.push_back(Event::SignedIn {
            user,
            session,
            resumed,
        });
        if !resumed && self.password.is_some() {
            // A new sign-in by password settles a change whose answer was
            // lost: the old password worked (it did not happen), or the
            // new one did.
            self.changing_to = None;
            if std::mem::take(&mut self.trying_new) {
                self.events.push_back(Event::PasswordChanged { user });
            }
        }
        let pending: Vec<(u64, Outgoing)> =
            self.outbox.iter().map(|(n, o)| (*n, o.clone())).collect();
        for (n, o) in pending {
            self.send_outgoing(session, n, &o);
        }
        self.open_transfers();
    }

    /// Handles one packet; returns the transfer it advanced, if any.
    fn handle_packet(&mut self, packet: Packet) -> Option<TransferId> {
        use Packet::*;
        match packet {
            SessionCookie { user, session } => {
                if let Phase::Opening { resuming } = self.phase {
                    self.signed_in(user, session, resuming);
                }
            }
            Error {
                request_type,
                code,
                subject,
                text,
            } => self.handle_error(request_type, code, subject, text),
            PasswordChanged { user } => {
                if let Some(new) = self.changing_to.take() {
                    // Sign in again with the new one if the session is lost.
                    self.password = Some(new);
                }
                self.events.push_back(Event::PasswordChanged { user });
            }
            UsersResponse { users } => self.events.push_back(Event::Users(users)),
            UserDataResponse { user, name } => {
                self.events.push_back(Event::UserName { user, name })
            }
            FilesResponse { files } => self.events.push_back(Event::Files(files)),
            MessageResponse { message } | BroadcastResponse { message }
                if self.outbox.remove(&message).is_some() =>
            {
                self.events.push_back(Event::MessageSent { message });
            }
            IncomingMessage {
                from,
                message,
                body,
            } => {
                if self.config.acknowledge_incoming {
                    self.send(IncomingMessageAck { message });
                }
                if self.remember_incoming(message) {
                    self.events.push_back(Event::Incoming {
                        from,
                        message,
                        broadcast: message & BROADCAST_BIT != 0,
                        body,
                    });
                }
            }
            FileDataResponse { file, size, name } => {
                let waiting = self.transfers.values_mut().find(|t| {
                    !t.is_upload() && t.file == Some(file) && t.size.is_none() && t.opening
                });
                if let Some(t) = waiting {
                    t.size = Some(size);
                    t.opening = false;
                }
                self.events.push_back(Event::FileInfo { file, size, name });
                self.open_transfers();
            }
            FileDownloadResponse { file, transaction } => {
                let waiting = self.transfers.values_mut().find(|t| {
                    !t.is_upload() && t.file == Some(file) && t.transaction.is_none() && t.opening
                });
                if let Some(t) = waiting {
                    t.transaction = Some(transaction);
                    let (id, size) = (t.id, t.size.unwrap_or(0));
                    self.events.push_back(Event::TransferStarted {
                        transfer: id,
                        file,
                        size,
                    });
                    self.fill(id);
                    return Some(id);
                }
            }
            FileUploadResponse { file, transaction } => {
                let id = self.uploads_opening.pop_front()?;
                // None when the upload was cancelled: the answer is dropped.
                let t = self.transfers.get_mut(&id)?;
                t.transaction = Some(transaction);
                t.file = Some(file);
                let size = t.size.unwrap_or(0);
                self.events.push_back(Event::TransferStarted {
                    transfer: id,
                    file,
                    size,
                });
                self.fill(id);
                return Some(id);
            }
            DownloadChunkResponse {
                transaction,
                chunk,
                data,
            } => {
                let id = self.transfer_by_transaction(transaction, false)?;
                let t = self.transfers.get_mut(&id)?;
                if !t.chunk_fits(chunk, &data) {
                    let text = format!("chunk {chunk} has {} bytes", data.len());
                    self.fail_transfer(id, ErrorCode::BadChunk, text);
                    return None;
                }
                if t.answered(chunk) {
                    self.events.push_back(Event::DownloadData {
                        transfer: id,
                        offset: u64::from(chunk) * crate::limits::CHUNK_SIZE as u64,
                        data,
                    });
                    self.fill(id);
                    return Some(id);
                }
            }
            UploadChunkResponse { transaction, chunk } => {
                let id = self.transfer_by_transaction(transaction, true)?;
                if self.transfers.get_mut(&id)?.answered(chunk) {
                    self.fill(id);
                    return Some(id);
                }
            }
            // Client → server packets are not expected here; ignore them.
            _ => {}
        }
        None
    }

    /// Remembers an incoming delivery number; false if it was seen before.
    fn remember_incoming(&mut self, message: u64) -> bool {
        if !self.seen.insert(message) {
            return false;
        }
        self.seen_order.push_back(message);
        while self.seen_order.len() > self.config.remembered_incoming.max(1) {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn handle_error(&mut self, request_type: u16, code: ErrorCode, subject: u64, text: String) {
        if code.closes_connection() || (request_type == 0 && code == ErrorCode::BadSession) {
            if code == ErrorCode::BadSession {
                // Expired: the next transport signs in anew.
                self.session = None;
                for t in self.transfers.values_mut() {
                    t.restart();
                }
            }
            self.events.push_back(Event::Disconnected { code, text });
            return;
        }
        match (request_type, self.phase) {
            (kind::SESSION_PRESERVE, Phase::Opening { resuming: true }) => {
                self.session = None;
                for t in self.transfers.values_mut() {
                    t.restart();
                }
                self.events.push_back(Event::SessionLost);
                match self.sign_in_packet() {
                    Some(packet) => {
                        self.phase = Phase::Opening { resuming: false };
                        self.send(packet);
                    }
                    None => {
                        self.phase = Phase::Offline;
                        self.events.push_back(Event::SignInFailed { code, text });
                    }
                }
            }
            (kind::PASSWORD_CHANGE, _) => {
                self.changing_to = None;
                self.events
                    .push_back(Event::PasswordChangeFailed { code, text });
            }
            (kind::ACCOUNT_SIGN_IN, Phase::Opening { .. })
                if code == ErrorCode::BadCredentials && self.changing_to.is_some() =>
            {
                // A change whose answer was lost went through after all:
                // sign in with the new password.
                self.password = self.changing_to.take();
                self.trying_new = true;
                if let Some(packet) = self.sign_in_packet() {
                    self.send(packet);
                }
            }
            (kind::SESSION_REQUEST | kind::ACCOUNT_SIGN_IN, Phase::Opening { .. }) => {
                self.trying_new = false;
                // The transport stays usable: a later sign_in tries again.
                self.phase = Phase::Offline;
                self.events.push_back(Event::SignInFailed { code, text });
            }
            (kind::MESSAGE_REQUEST | kind::BROADCAST_REQUEST, _)
                if self.outbox.remove(&subject).is_some() =>
            {
                self.events.push_back(Event::MessageFailed {
                    message: subject,
                    code,
                    text,
                });
            }
            (kind::FILE_UPLOAD_REQUEST, _) if !self.uploads_opening.is_empty() => {
                match self.uploads_opening.pop_front() {
                    Some(id) if self.transfers.contains_key(&id) => {
                        self.fail_transfer(id, code, text)
                    }
                    // The upload was cancelled meanwhile.
                    _ => {}
                }
            }
            (kind::FILE_DATA_REQUEST | kind::FILE_DOWNLOAD_REQUEST, _) => {
                let waiting = self
                    .transfers
                    .values()
                    .find(|t| !t.is_upload() && t.file == Some(subject) && t.opening)
                    .map(|t| t.id);
                match waiting {
                    Some(id) => self.fail_transfer(id, code, text),
                    None => self.events.push_back(Event::ServerError {
                        request_type,
                        code,
                        subject,
                        text,
                    }),
                }
            }
            (kind::DOWNLOAD_CHUNK_REQUEST | kind::UPLOAD_CHUNK_REQUEST, _) => {
                let upload = request_type == kind::UPLOAD_CHUNK_REQUEST;
                if !upload && self.is_retired(subject) {
                    // Another chunk request of a download already reopened.
                    return;
                }
                match self.transfer_by_transaction(subject, upload) {
                    Some(id) if !upload && code == ErrorCode::UnknownTransaction => {
                        if let Some(t) = self.transfers.get_mut(&id) {
                            t.reopen();
                        }
                        self.open_transfers();
                    }
                    Some(id) => self.fail_transfer(id, code, text),
                    None => self.events.push_back(Event::ServerError {
                        request_type,
                        code,
                        subject,
                        text,
                    }),
                }
            }
            _ => self.events.push_back(Event::ServerError {
                request_type,
                code,
                subject,
                text,
            }),
        }
    }
}
