//! The browser shell around the protocol core. Protocol logic lives in
//! `proto::Client`; this module moves bytes between it and the socket,
//! keeps its timers, and carries out what the event policy decides.
//!
//! # Layout
//! - `socket`: one WebSocket's lifecycle (gloo-net), as events.
//! - `policy`: what to do about each event of the core (pure, unit-tested),
//!   and the reconnection back-off.
//! - `download`: a download assembled as a list of `Blob` parts.
//! - `url`: where the WebSocket is, relative to the page.
//! - this file: the [`Connection`] the components call, which wires them.

mod download;
mod policy;
mod socket;
mod url;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use gloo_timers::callback::Timeout;
use proto::{Client, ClientConfig, ClientError, TransferId};
use yew::Callback;

use crate::browser;
use crate::state::{Action, FileEntry, Link, Peer, SignInError, SignInField};
use download::Assembly;
use policy::{Effect, Policy};
use socket::{Socket, SocketEvent};

pub use url::socket_url;

/// Chunks in flight per transfer: enough to keep a local link busy.
const WINDOW: u32 = 256;

/// Keys in `sessionStorage`, so a reload resumes the same session.
pub const NAME_KEY: &str = "chat.name";
/// See [`NAME_KEY`].
pub const SESSION_KEY: &str = "chat.session";

/// The shared handle the components hold.
pub type Shared = Rc<RefCell<Connection>>;

/// One chat connection and its protocol state.
pub struct Connection {
    core: Client,
    policy: Policy,
    dispatch: Callback<Action>,
    this: Weak<RefCell<Connection>>,
    socket: Option<Socket>,
    /// Bumped per socket, so events of an old socket are ignored.
    generation: u64,
    retry: Option<Timeout>,
    wake: Option<Timeout>,
    downloads: HashMap<TransferId, Assembly<web_sys::Blob>>,
    /// The files being uploaded, read a slice at a time.
    uploads: HashMap<TransferId, web_sys::File>,
    /// Slices the core asked for, read once the borrow of `self` ends.
    reads: Vec<(TransferId, u64, u64)>,
}

fn new_core() -> Client {
    Client::new(ClientConfig {
        window: WINDOW,
        // Message numbers must not repeat for a user across page loads.
        first_message_number: (js_sys::Date::now() * 1000.0) as u64,
        ..ClientConfig::default()
    })
}

impl Connection {
    /// Creates the connection; resumes the session stored by an earlier
    /// page load, if any.
    pub fn new(dispatch: Callback<Action>) -> Shared {
        let shared = Rc::new(RefCell::new(Connection {
            core: new_core(),
            policy: Policy::default(),
            dispatch,
            this: Weak::new(),
            socket: None,
            generation: 0,
            retry: None,
            wake: None,
            downloads: HashMap::new(),
            uploads: HashMap::new(),
            reads: Vec::new(),
        }));
        shared.borrow_mut().this = Rc::downgrade(&shared);
        let stored_name = browser::session_get(NAME_KEY);
        let stored_session = browser::session_get(SESSION_KEY).and_then(|s| s.parse::<u64>().ok());
        if let Some(name) = stored_name {
            let mut c = shared.borrow_mut();
            if c.core.sign_in(&name).is_ok() {
                if let Some(session) = stored_session {
                    c.core.resume_session(session);
                }
                c.policy.wanted = true;
                c.open_socket();
            }
        }
        shared
    }

    fn now() -> Duration {
        Duration::from_secs_f64(browser::now_ms().max(0.0) / 1000.0)
    }

    // ----- what the components call -----

    /// Signs in under `name`, with a password if one is given (which
    /// claims a free name with it), opening the connection. Only the name
    /// is stored (for a reload); the password stays in the core's memory.
    pub fn sign_in(this: &Shared, name: &str, password: Option<&str>) {
        let mut c = this.borrow_mut();
        let result = match password {
            Some(password) => c.core.sign_in_with_password(name, password),
            None => c.core.sign_in(name),
        };
        match result {
            Ok(()) => {
                c.policy.with_password = password.is_some();
                browser::session_set(NAME_KEY, name);
                c.policy.wanted = true;
                if c.socket.is_none() {
                    c.open_socket();
                }
            }
            Err(e) => {
                let field = match e {
                    ClientError::InvalidPassword(_) => SignInField::Password,
                    _ => SignInField::Name,
                };
                c.dispatch.emit(Action::SignInFailed(SignInError {
                    name: name.to_owned(),
                    field,
                    text: e.to_string(),
                }));
            }
        }
    }

    /// Takes over the session `session` of `name` that another tab holds,
    /// through SESSION PRESERVE: the server moves it here and tells the
    /// other tab.
    pub fn take_over(this: &Shared, name: &str, session: u64) {
        {
            let mut c = this.borrow_mut();
            if c.core.sign_in(name).is_err() {
                return;
            }
            c.close_socket(1000, "taking over a session");
            c.core.resume_session(session);
            browser::session_set(NAME_KEY, name);
            browser::session_set(SESSION_KEY, &session.to_string());
            c.policy.wanted = true;
            c.policy.reset_retries();
            c.retry = None;
            c.open_socket();
        }
    }

    /// The name and session this connection is signed in with, if it is
    /// (for another tab that would take the session over).
    pub fn signed_in_as(this: &Shared) -> Option<(String, u64)> {
        let c = this.borrow();
        if !c.core.is_signed_in() {
            return None;
        }
        Some((c.core.name()?.to_owned(), c.core.session()?))
    }

    /// Changes (or, with `old` empty, sets) the signed-in user's password.
    pub fn change_password(this: &Shared, old: &str, new: &str) {
        let result = this.borrow_mut().core.change_password(old, new);
        let dispatch = this.borrow().dispatch.clone();
        match result {
            Ok(()) => dispatch.emit(Action::PasswordChangeSent),
            Err(e) => dispatch.emit(Action::PasswordChangeFailed {
                current: false,
                text: match e {
                    ClientError::NotSignedIn => {
                        "Not connected right now; try again once connected.".into()
                    }
                    e => e.to_string(),
                },
            }),
        }
        Self::pump(this);
    }

    /// Sends a message to a conversation.
    pub fn send(this: &Shared, peer: Peer, text: &str) {
        let result = {
            let mut c = this.borrow_mut();
            let body = Bytes::copy_from_slice(text.as_bytes());
            match peer {
                Peer::Everyone => c.core.broadcast(body),
                Peer::User(user) => c.core.send_message(user, body),
            }
        };
        let dispatch = this.borrow().dispatch.clone();
        match result {
            Ok(number) => dispatch.emit(Action::Sending {
                peer,
                number,
                text: text.to_owned(),
                at_ms: js_sys::Date::now() as u64,
            }),
            Err(e) => dispatch.emit(Action::Notice(Some(e.to_string()))),
        }
        Self::pump(this);
    }

    /// Starts uploading a file; its bytes are read a slice at a time, as
    /// the upload's window needs them, never the whole file at once.
    pub fn upload(this: &Shared, file: web_sys::File) {
        let name = file.name();
        // A File's size is a whole number of bytes in a double.
        let total = file.size().max(0.0) as u64;
        let result = this.borrow_mut().core.upload_supplied(&name, total);
        let dispatch = this.borrow().dispatch.clone();
        match result {
            Ok(id) => {
                this.borrow_mut().uploads.insert(id, file);
                dispatch.emit(Action::TransferStarted {
                    id,
                    name,
                    upload: true,
                    total,
                    now_ms: browser::now_ms(),
                });
            }
            Err(ClientError::FileTooLarge(size)) => dispatch.emit(Action::Notice(Some(format!(
                "{name} is {}; the chat takes files up to 4 GiB.",
                crate::format::size(size)
            )))),
            Err(e) => dispatch.emit(Action::Notice(Some(format!("Cannot upload {name}: {e}")))),
        }
        Self::pump(this);
    }

    /// Reads a slice of an upload's file and hands it to the core.
    fn read(this: &Shared, transfer: TransferId, offset: u64, len: u64) {
        let Some(file) = this.borrow().uploads.get(&transfer).cloned() else {
            return;
        };
        let weak = Rc::downgrade(this);
        wasm_bindgen_futures::spawn_local(async move {
            let read = browser::read_slice(&file, offset, len).await;
            let Some(this) = weak.upgrade() else { return };
            match read {
                Ok(bytes) => {
                    // False if the upload was cancelled or restarted
                    // meanwhile: the core asks again for what it needs.
                    this.borrow_mut()
                        .core
                        .supply_upload(transfer, offset, &bytes);
                    Self::pump(&this);
                }
                Err(why) => {
                    {
                        let mut c = this.borrow_mut();
                        c.uploads.remove(&transfer);
                        c.policy.forget_transfer(transfer);
                        c.core.cancel(transfer);
                    }
                    Self::emit(
                        &this,
                        vec![Action::TransferEnded {
                            id: transfer,
                            error: Some(format!("cannot read {}: {why}", file.name())),
                            now_ms: browser::now_ms(),
                        }],
                    );
                }
            }
        });
    }

    /// Starts downloading a file; it is saved under its name when complete.
    pub fn download(this: &Shared, file: u64, entry: &FileEntry) {
        let id = {
            let mut c = this.borrow_mut();
            let id = c.core.download(file);
            c.downloads.insert(id, Assembly::new(entry.name.clone()));
            id
        };
        let dispatch = this.borrow().dispatch.clone();
        dispatch.emit(Action::TransferStarted {
            id,
            name: entry.name.clone(),
            upload: false,
            total: u64::from(entry.size),
            now_ms: browser::now_ms(),
        });
        Self::pump(this);
    }

    /// Cancels a transfer.
    pub fn cancel(this: &Shared, id: TransferId) {
        let cancelled = {
            let mut c = this.borrow_mut();
            c.downloads.remove(&id);
            c.uploads.remove(&id);
            c.policy.forget_transfer(id);
            c.core.cancel(id)
        };
        if cancelled {
            let dispatch = this.borrow().dispatch.clone();
            dispatch.emit(Action::TransferEnded {
                id,
                error: Some("cancelled".into()),
                now_ms: browser::now_ms(),
            });
        }
    }

    /// Asks for the online users and the files again.
    pub fn refresh(this: &Shared) {
        {
            let mut c = this.borrow_mut();
            if !c.core.is_signed_in() {
                return;
            }
            let _ = c.core.request_users();
            let _ = c.core.request_files();
        }
        Self::pump(this);
    }

    /// Connects again after the connection was given up (the session moved
    /// to another tab, or the user wants to retry now rather than wait).
    pub fn reconnect(this: &Shared) {
        let mut c = this.borrow_mut();
        c.policy.wanted = true;
        c.retry = None;
        c.policy.reset_retries();
        if c.socket.is_none() {
            c.open_socket();
        }
    }

    /// Signs out: forgets the session and closes the connection.
    pub fn sign_out(this: &Shared) {
        let dispatch = {
            let mut c = this.borrow_mut();
            c.retry = None;
            c.wake = None;
            c.close_socket(1000, "signed out");
            browser::session_remove(NAME_KEY);
            browser::session_remove(SESSION_KEY);
            c.policy.reset();
            c.downloads.clear();
            c.uploads.clear();
            c.core = new_core();
            c.dispatch.clone()
        };
        dispatch.emit(Action::SignedOut);
    }

    // ----- the socket -----

    fn open_socket(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.dispatch.emit(Action::Link(Link::Connecting));
        let Some(url) = browser::base_uri().as_deref().and_then(socket_url) else {
            self.policy.wanted = false;
            self.dispatch.emit(Action::Link(Link::Offline));
            self.dispatch.emit(Action::Notice(Some(
                "This page is not served over http(s), so it has no chat server to reach.".into(),
            )));
            return;
        };
        let this = self.this.clone();
        let on_event = move |event: SocketEvent| {
            let Some(shared) = this.upgrade() else { return };
            if shared.borrow().generation != generation {
                return;
            }
            Self::on_socket(&shared, event);
        };
        match Socket::open(&url, on_event) {
            Ok(socket) => self.socket = Some(socket),
            Err(why) => {
                let mut actions = Vec::new();
                let effects = self.policy.socket_closed(why);
                self.apply(effects, &mut actions);
                for a in actions {
                    self.dispatch.emit(a);
                }
            }
        }
    }

    fn on_socket(this: &Shared, event: SocketEvent) {
        match event {
            SocketEvent::Opened => this.borrow_mut().core.connected(Self::now()),
            SocketEvent::Data(bytes) => {
                let mut c = this.borrow_mut();
                if let Err(e) = c.core.handle_input(Self::now(), &bytes) {
                    let effects = c.policy.socket_closed(format!("protocol error: {e}"));
                    c.close_socket(4000, &format!("protocol error: {e}"));
                    let mut actions = Vec::new();
                    c.apply(effects, &mut actions);
                    drop(c);
                    Self::emit(this, actions);
                }
            }
            SocketEvent::Closed(reason) => {
                let mut c = this.borrow_mut();
                c.socket = None;
                c.generation += 1;
                c.core.disconnected();
                c.wake = None;
                let effects = c.policy.socket_closed(reason);
                let mut actions = Vec::new();
                c.apply(effects, &mut actions);
                drop(c);
                Self::emit(this, actions);
            }
        }
        Self::pump(this);
    }

    fn close_socket(&mut self, code: u16, reason: &str) {
        if let Some(socket) = self.socket.take() {
            socket.close(code, reason);
        }
        self.generation += 1;
        self.wake = None;
        self.core.disconnected();
    }

    fn schedule_retry(&mut self, reason: String) {
        let delay = self.policy.next_retry_ms(js_sys::Math::random());
        self.dispatch.emit(Action::Link(Link::Reconnecting {
            retry_in_ms: delay,
            reason,
        }));
        let this = self.this.clone();
        self.retry = Some(Timeout::new(delay, move || {
            if let Some(shared) = this.upgrade() {
                let mut c = shared.borrow_mut();
                c.retry = None;
                if c.policy.wanted && c.socket.is_none() {
                    c.open_socket();
                }
            }
        }));
    }

    fn emit(this: &Shared, actions: Vec<Action>) {
        let dispatch = this.borrow().dispatch.clone();
        for a in actions {
            dispatch.emit(a);
        }
    }

    /// Sends what the core has queued, runs its events through the policy,
    /// and sets the keepalive timer. Actions are emitted after the borrow
    /// ends, so a re-render can use the connection again.
    fn pump(this: &Shared) {
        let (actions, reads) = {
            let mut c = this.borrow_mut();
            let mut actions = Vec::new();
            // Events can queue more packets (acks, next chunks): loop.
            loop {
                c.flush();
                let Some(event) = c.core.poll_event() else {
                    break;
                };
                let name = c.core.name().unwrap_or_default().to_owned();
                let effects =
                    c.policy
                        .on_event(event, &name, browser::now_ms(), js_sys::Date::now() as u64);
                c.apply(effects, &mut actions);
            }
            c.flush();
            c.schedule_wake();
            (actions, std::mem::take(&mut c.reads))
        };
        for (transfer, offset, len) in reads {
            Self::read(this, transfer, offset, len);
        }
        Self::emit(this, actions);
    }

    /// Carries out the policy's decisions; what the view must hear goes to
    /// `actions`.
    fn apply(&mut self, effects: Vec<Effect>, actions: &mut Vec<Action>) {
        for effect in effects {
            match effect {
                Effect::Show(a) => actions.push(a),
                Effect::AskName(user) => {
                    let _ = self.core.request_user(user);
                }
                Effect::AskFile(file) => {
                    let _ = self.core.request_file(file);
                }
                Effect::AskLists => {
                    let _ = self.core.request_users();
                    let _ = self.core.request_files();
                }
                Effect::KeepSession(session) => {
                    browser::session_set(SESSION_KEY, &session.to_string())
                }
                Effect::ForgetSession => browser::session_remove(SESSION_KEY),
                Effect::ForgetSignIn => {
                    browser::session_remove(NAME_KEY);
                    browser::session_remove(SESSION_KEY);
                }
                Effect::Close => self.close_socket(1000, "disconnected by the server"),
                Effect::Retry(reason) => self.schedule_retry(reason),
                Effect::Read {
                    transfer,
                    offset,
                    len,
                } => self.reads.push((transfer, offset, len)),
                Effect::DownloadData { transfer, data } => {
                    let Some(d) = self.downloads.get_mut(&transfer) else {
                        continue;
                    };
                    if let Err(why) = d.push(&data, browser::blob_of) {
                        let name = d.name.clone();
                        self.downloads.remove(&transfer);
                        self.core.cancel(transfer);
                        self.policy.forget_transfer(transfer);
                        actions.push(Action::TransferEnded {
                            id: transfer,
                            error: Some(too_large(&name, &why)),
                            now_ms: browser::now_ms(),
                        });
                    }
                }
                Effect::Finished(transfer) => {
                    let error = match self.downloads.remove(&transfer) {
                        Some(d) => {
                            let name = d.name.clone();
                            d.finish(browser::blob_of)
                                .and_then(|parts| browser::save_parts(&name, &parts))
                                .err()
                                .map(|why| too_large(&name, &why))
                        }
                        None => {
                            // An upload: the list has a new file.
                            self.uploads.remove(&transfer);
                            let _ = self.core.request_files();
                            None
                        }
                    };
                    actions.push(Action::TransferEnded {
                        id: transfer,
                        error,
                        now_ms: browser::now_ms(),
                    });
                }
                Effect::Dropped(transfer) => {
                    self.downloads.remove(&transfer);
                    self.uploads.remove(&transfer);
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.core.poll_transmit() {
            if let Some(socket) = &self.socket {
                socket.send(bytes.to_vec());
            }
        }
    }

    fn schedule_wake(&mut self) {
        let Some(at) = self.core.poll_timeout() else {
            self.wake = None;
            return;
        };
        let delay = at.saturating_sub(Self::now()).as_millis().min(60_000) as u32;
        let this = self.this.clone();
        self.wake = Some(Timeout::new(delay, move || {
            if let Some(shared) = this.upgrade() {
                shared.borrow_mut().core.handle_timeout(Self::now());
                Self::pump(&shared);
            }
        }));
    }
}

/// Words for a download the browser could not hold.
fn too_large(name: &str, why: &str) -> String {
    format!(
        "This browser could not hold {name} ({why}); free some memory or disk space and try again."
    )
}
