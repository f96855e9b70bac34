//! The browser shell around the protocol core: a binary WebSocket to the
//! gateway's `/ws`, the page clock, timers, reconnection with back-off and
//! session storage. Protocol logic lives in `proto::Client`; this file only
//! moves bytes and turns the core's events into [`Action`]s.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use gloo_timers::callback::Timeout;
use proto::{Client, ClientConfig, ClientError, ErrorCode, Event, TransferId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::browser;
use crate::state::{
    as_sentence, error_message, Action, FileEntry, Link, Peer, SignInError, SignInField,
};

/// Chunks in flight per transfer: enough to keep a local link busy.
const WINDOW: u32 = 256;
/// Reconnection back-off bounds, in milliseconds.
const FIRST_RETRY_MS: u32 = 500;
const MAX_RETRY_MS: u32 = 15_000;
/// At most one progress update per transfer this often, so a fast
/// transfer does not re-render the page for every WebSocket message.
const PROGRESS_EVERY_MS: f64 = 100.0;

/// Keys in `sessionStorage`, so a reload resumes the same session.
pub const NAME_KEY: &str = "chat.name";
/// See [`NAME_KEY`].
pub const SESSION_KEY: &str = "chat.session";

/// The shared handle the components hold.
pub type Shared = Rc<RefCell<Connection>>;

/// Event handlers of the current socket, kept alive with it.
struct Handlers {
    _open: Closure<dyn FnMut()>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

/// A download being assembled in memory until it can be saved.
struct Download {
    name: String,
    bytes: Vec<u8>,
}

/// One chat connection and its protocol state.
pub struct Connection {
    core: Client,
    dispatch: Callback<Action>,
    this: Weak<RefCell<Connection>>,
    ws: Option<WebSocket>,
    handlers: Option<Handlers>,
    /// Bumped per socket, so events of an old socket are ignored.
    generation: u64,
    /// Whether the user is signed in (or signing in) and wants a connection.
    wanted: bool,
    retry_ms: u32,
    retry: Option<Timeout>,
    wake: Option<Timeout>,
    names_asked: HashSet<u64>,
    files_asked: HashSet<u64>,
    downloads: HashMap<TransferId, Download>,
    /// When each transfer's progress was last shown (page clock, ms).
    progress_shown: HashMap<TransferId, f64>,
    /// Whether the name is protected by a password, once this page knows
    /// (not after a reload, until signing in anew). The password itself
    /// lives only in the core's memory.
    protected: Option<bool>,
    /// Whether the core signs in with a password (given at sign-in, or
    /// set since): a new session is then one of a protected name.
    with_password: bool,
}

impl Connection {
    /// Creates the connection; resumes the session stored by an earlier
    /// page load, if any.
    pub fn new(dispatch: Callback<Action>) -> Shared {
        let config = ClientConfig {
            window: WINDOW,
            // Message numbers must not repeat for a user across page loads.
            first_message_number: (js_sys::Date::now() * 1000.0) as u64,
            ..ClientConfig::default()
        };
        let shared = Rc::new(RefCell::new(Connection {
            core: Client::new(config),
            dispatch,
            this: Weak::new(),
            ws: None,
            handlers: None,
            generation: 0,
            wanted: false,
            retry_ms: FIRST_RETRY_MS,
            retry: None,
            wake: None,
            names_asked: HashSet::new(),
            files_asked: HashSet::new(),
            downloads: HashMap::new(),
            progress_shown: HashMap::new(),
            protected: None,
            with_password: false,
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
                c.wanted = true;
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
                c.with_password = password.is_some();
                browser::session_set(NAME_KEY, name);
                c.wanted = true;
                if c.ws.is_none() {
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
            }),
            Err(e) => dispatch.emit(Action::Notice(Some(e.to_string()))),
        }
        Self::pump(this);
    }

    /// Starts uploading a file's bytes.
    pub fn upload(this: &Shared, name: &str, data: Vec<u8>) {
        let total = data.len() as u64;
        let result = this.borrow_mut().core.upload(name, Bytes::from(data));
        let dispatch = this.borrow().dispatch.clone();
        match result {
            Ok(id) => dispatch.emit(Action::TransferStarted {
                id,
                name: name.to_owned(),
                upload: true,
                total,
                now_ms: browser::now_ms(),
            }),
            Err(e) => dispatch.emit(Action::Notice(Some(format!("cannot upload {name}: {e}")))),
        }
        Self::pump(this);
    }

    /// Starts downloading a file; it is saved when complete.
    pub fn download(this: &Shared, file: u64, entry: &FileEntry) {
        let id = {
            let mut c = this.borrow_mut();
            let id = c.core.download(file);
            c.downloads.insert(
                id,
                Download {
                    name: entry.name.clone(),
                    bytes: vec![0; entry.size as usize],
                },
            );
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
            c.progress_shown.remove(&id);
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

    /// Shows a message in the page's notice bar.
    pub fn notice(this: &Shared, text: String) {
        let dispatch = this.borrow().dispatch.clone();
        dispatch.emit(Action::Notice(Some(text)));
    }

    /// Connects again after the connection was given up (the session moved
    /// to another tab, or the user wants to retry now rather than wait).
    pub fn reconnect(this: &Shared) {
        let mut c = this.borrow_mut();
        c.wanted = true;
        c.retry = None;
        c.retry_ms = FIRST_RETRY_MS;
        if c.ws.is_none() {
            c.open_socket();
        }
    }

    /// Signs out: forgets the session and closes the connection.
    pub fn sign_out(this: &Shared) {
        let dispatch = {
            let mut c = this.borrow_mut();
            c.wanted = false;
            c.retry = None;
            c.wake = None;
            c.close_socket(1000, "signed out");
            browser::session_remove(NAME_KEY);
            browser::session_remove(SESSION_KEY);
            browser::session_remove(crate::app::STATE_KEY);
            c.protected = None;
            c.with_password = false;
            c.core = Client::new(ClientConfig {
                window: WINDOW,
                first_message_number: (js_sys::Date::now() * 1000.0) as u64,
                ..ClientConfig::default()
            });
            c.dispatch.clone()
        };
        dispatch.emit(Action::SignedOut);
    }

    // ----- the socket -----

    fn socket_url() -> String {
        let (protocol, host) = browser::location();
        let scheme = if protocol == "https:" { "wss" } else { "ws" };
        format!("{scheme}://{host}/ws")
    }

    fn open_socket(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.dispatch.emit(Action::Link(Link::Connecting));
        let ws = match WebSocket::new(&Self::socket_url()) {
            Ok(ws) => ws,
            Err(_) => {
                self.schedule_retry("the browser refused to open a WebSocket".into());
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let this = self.this.clone();
        let open = Closure::<dyn FnMut()>::new({
            let this = this.clone();
            move || {
                if let Some(shared) = this.upgrade() {
                    if shared.borrow().generation == generation {
                        shared.borrow_mut().core.connected(Self::now());
                        Self::pump(&shared);
                    }
                }
            }
        });
        let message = Closure::<dyn FnMut(MessageEvent)>::new({
            let this = this.clone();
            move |event: MessageEvent| {
                let Some(shared) = this.upgrade() else { return };
                if shared.borrow().generation != generation {
                    return;
                }
                let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() else {
                    return;
                };
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                let result = shared.borrow_mut().core.handle_input(Self::now(), &bytes);
                if let Err(e) = result {
                    shared
                        .borrow_mut()
                        .close_socket(4000, &format!("protocol error: {e}"));
                }
                Self::pump(&shared);
            }
        });
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let Some(shared) = this.upgrade() else { return };
            if shared.borrow().generation != generation {
                return;
            }
            let reason = match event.reason() {
                r if r.is_empty() => format!("connection closed ({})", event.code()),
                r => r,
            };
            shared.borrow_mut().socket_closed(reason);
            Self::pump(&shared);
        });
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        self.handlers = Some(Handlers {
            _open: open,
            _message: message,
            _close: close,
        });
        self.ws = Some(ws);
    }

    fn close_socket(&mut self, code: u16, reason: &str) {
        if let Some(ws) = self.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close_with_code_and_reason(code, reason);
        }
        self.handlers = None;
        self.generation += 1;
        self.core.disconnected();
    }

    fn socket_closed(&mut self, reason: String) {
        self.ws = None;
        self.handlers = None;
        self.core.disconnected();
        self.wake = None;
        if self.wanted {
            self.schedule_retry(reason);
        } else {
            self.dispatch.emit(Action::Link(Link::Offline));
        }
    }

    fn schedule_retry(&mut self, reason: String) {
        let delay = self.retry_ms;
        self.retry_ms = (self.retry_ms * 2).min(MAX_RETRY_MS);
        self.dispatch.emit(Action::Link(Link::Reconnecting {
            retry_in_ms: delay,
            reason,
        }));
        let this = self.this.clone();
        self.retry = Some(Timeout::new(delay, move || {
            if let Some(shared) = this.upgrade() {
                let mut c = shared.borrow_mut();
                c.retry = None;
                if c.wanted && c.ws.is_none() {
                    c.open_socket();
                }
            }
        }));
    }

    /// Sends what the core has queued, hands its events to the view, and
    /// sets the keepalive timer. Actions are emitted after the borrow ends,
    /// so a re-render can use the connection again.
    fn pump(this: &Shared) {
        let (actions, dispatch) = {
            let mut c = this.borrow_mut();
            let mut actions = Vec::new();
            // Events can queue more packets (acks, next chunks): loop.
            loop {
                c.flush();
                let Some(event) = c.core.poll_event() else {
                    break;
                };
                c.on_event(event, &mut actions);
            }
            c.flush();
            c.schedule_wake();
            (actions, c.dispatch.clone())
        };
        for a in actions {
            dispatch.emit(a);
        }
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.core.poll_transmit() {
            if let Some(ws) = &self.ws {
                if ws.send_with_u8_array(&bytes).is_err() {
                    // The close event follows; the core resends on resume.
                    break;
                }
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

    fn ask_name(&mut self, user: u64) {
        if self.names_asked.insert(user) {
            let _ = self.core.request_user(user);
        }
    }

    fn on_event(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::SignedIn {
                user,
                session,
                resumed,
            } => {
                browser::session_set(SESSION_KEY, &session.to_string());
                if !resumed {
                    self.protected = Some(self.with_password);
                }
                self.retry_ms = FIRST_RETRY_MS;
                let name = self.core.name().unwrap_or_default().to_owned();
                // Answers lost with the last connection are asked again.
                self.names_asked.clear();
                self.files_asked.clear();
                self.names_asked.insert(user);
                out.push(Action::SignedIn {
                    user,
                    name,
                    protected: self.protected,
                });
                let _ = self.core.request_users();
                let _ = self.core.request_files();
            }
            Event::SignInFailed { code, text } => {
                self.wanted = false;
                browser::session_remove(NAME_KEY);
                browser::session_remove(SESSION_KEY);
                self.close_socket(1000, "sign-in failed");
                out.push(Action::Link(Link::Offline));
                let name = self.core.name().unwrap_or_default().to_owned();
                out.push(Action::SignInFailed(SignInError::from_server(
                    &name, code, &text,
                )));
            }
            Event::SessionLost => browser::session_remove(SESSION_KEY),
            Event::PasswordChanged { .. } => {
                self.protected = Some(true);
                self.with_password = true;
                out.push(Action::PasswordChanged);
            }
            Event::PasswordChangeFailed { code, text } => {
                let current = code == ErrorCode::BadCredentials;
                out.push(Action::PasswordChangeFailed {
                    current,
                    text: if current {
                        // The server says which: wrong, or none to give.
                        as_sentence(&text, "The current password is wrong.")
                    } else {
                        error_message(code, &text)
                    },
                });
            }
            Event::Disconnected { code, text } => {
                if code == ErrorCode::SessionMoved {
                    // Another tab resumed this session: let it have it.
                    self.wanted = false;
                    out.push(Action::Notice(Some(
                        "This chat was opened in another tab or window.".into(),
                    )));
                } else if code.sentence().is_some() {
                    out.push(Action::Notice(Some(error_message(code, &text))));
                } else if code != ErrorCode::BadSession {
                    out.push(Action::Notice(Some(text.clone())));
                }
                // The core asks the shell to close; the server closes too,
                // but a half-open socket must not keep us waiting.
                self.close_socket(1000, "disconnected by the server");
                self.wake = None;
                if self.wanted {
                    self.schedule_retry(format!("{code}: {text}"));
                } else {
                    out.push(Action::Link(Link::Offline));
                }
            }
            Event::Users(users) => {
                for &u in &users {
                    self.ask_name(u);
                }
                out.push(Action::Online(users));
            }
            Event::UserName { user, name } => out.push(Action::Name(user, name)),
            Event::Files(files) => {
                for &f in &files {
                    if self.files_asked.insert(f) {
                        let _ = self.core.request_file(f);
                    }
                }
                out.push(Action::Files(files));
            }
            Event::FileInfo { file, size, name } => {
                out.push(Action::File(file, FileEntry { name, size }))
            }
            Event::MessageSent { message } => out.push(Action::Sent(message)),
            Event::MessageFailed {
                message,
                code,
                text,
            } => out.push(Action::Failed {
                number: message,
                reason: error_message(code, &text),
            }),
            Event::Incoming {
                from,
                message,
                broadcast,
                body,
            } => {
                self.ask_name(from);
                out.push(Action::Incoming {
                    from,
                    delivery: message,
                    broadcast,
                    text: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            Event::TransferStarted { .. } => {}
            Event::DownloadData {
                transfer,
                offset,
                data,
            } => {
                if let Some(d) = self.downloads.get_mut(&transfer) {
                    let start = offset as usize;
                    if let Some(slot) = d.bytes.get_mut(start..start + data.len()) {
                        slot.copy_from_slice(&data);
                    }
                }
            }
            Event::TransferProgress { transfer, done, .. } => {
                let now_ms = browser::now_ms();
                let last = self.progress_shown.get(&transfer).copied();
                if last.is_none_or(|t| now_ms - t >= PROGRESS_EVERY_MS) {
                    self.progress_shown.insert(transfer, now_ms);
                    out.push(Action::Progress {
                        id: transfer,
                        done,
                        now_ms,
                    });
                }
            }
            Event::TransferComplete { transfer, .. } => {
                self.progress_shown.remove(&transfer);
                match self.downloads.remove(&transfer) {
                    Some(d) => browser::save_file(&d.name, &d.bytes),
                    None => {
                        let _ = self.core.request_files();
                    }
                }
                out.push(Action::TransferEnded {
                    id: transfer,
                    error: None,
                    now_ms: browser::now_ms(),
                });
            }
            Event::TransferFailed {
                transfer,
                code,
                text,
            } => {
                self.downloads.remove(&transfer);
                self.progress_shown.remove(&transfer);
                out.push(Action::TransferEnded {
                    id: transfer,
                    error: Some(error_message(code, &text)),
                    now_ms: browser::now_ms(),
                });
            }
            Event::ServerError { code, text, .. } => {
                out.push(Action::Notice(Some(match code.sentence() {
                    Some(_) => error_message(code, &text),
                    None => text,
                })))
            }
        }
    }
}
