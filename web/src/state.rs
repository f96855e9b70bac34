//! The app's state and its reducer: pure logic, no browser calls, so it is
//! tested natively and in the browser alike.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use proto::limits::{validate_password, MAX_PASSWORD, MIN_PASSWORD};
use proto::ErrorCode;
use yew::Reducible;

/// Messages kept per conversation, in memory and in the history kept in
/// IndexedDB; past it the oldest are dropped first. Each conversation's
/// record is rewritten whole when it changes, so this also bounds the cost
/// of a write.
pub const HISTORY: usize = 500;

/// The WebSocket's state, always shown in the header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Link {
    /// No connection and none wanted (not signed in).
    #[default]
    Offline,
    /// Opening the WebSocket.
    Connecting,
    /// Connected and signed in.
    Online,
    /// Lost; the next attempt is in `retry_in_ms`.
    Reconnecting {
        /// Milliseconds until the next attempt.
        retry_in_ms: u32,
        /// Why the last connection ended.
        reason: String,
    },
}

/// What a narrow screen (a phone) shows: one view at a time. Wide
/// screens show all three side by side and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// The conversations and who is online.
    #[default]
    List,
    /// The open conversation.
    Conversation,
    /// The shared files and transfers.
    Files,
}

impl View {
    /// The `data-view` attribute value the style sheet keys on.
    pub fn as_str(self) -> &'static str {
        match self {
            View::List => "list",
            View::Conversation => "conversation",
            View::Files => "files",
        }
    }
}

/// A conversation: everyone (broadcasts) or one other user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Broadcasts.
    Everyone,
    /// Direct messages with this user.
    User(u64),
}

/// Where an own message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Sent, not yet acknowledged by the server.
    Sending,
    /// Stored by the server.
    Sent,
    /// Refused; the text says why.
    Failed(String),
}

impl Message {
    /// Whether `other` is the same message (a redelivery, or the same own
    /// message kept in the history and shown since).
    pub fn same_as(&self, other: &Message) -> bool {
        match (&self.own, &other.own) {
            (Some((a, _)), Some((b, _))) => a == b,
            (None, None) => self.delivery == other.delivery,
            _ => false,
        }
    }
}

impl Delivery {
    /// The `data-state` attribute value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Delivery::Sending => "sending",
            Delivery::Sent => "sent",
            Delivery::Failed(_) => "failed",
        }
    }
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: u64,
    /// The text.
    pub text: String,
    /// For own messages: the client's message number and its state.
    pub own: Option<(u64, Delivery)>,
    /// For incoming messages: the server's delivery number.
    pub delivery: Option<u64>,
    /// When it was sent (own) or arrived (incoming), in milliseconds since
    /// the Unix epoch on this device's clock; 0 when not known (history
    /// kept by an older version of the app).
    pub at_ms: u64,
}

/// Messages and unread count of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversation {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Messages arrived while another conversation was open.
    pub unread: u32,
    /// The delivery number of the first of the unread messages, where the
    /// "new messages" marker goes when the conversation is opened.
    pub first_unread: Option<u64>,
}

/// One conversation as the history keeps it, with the names its messages
/// need (a user may be offline, so not in the server's user list, when
/// the history is read again).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Whose conversation.
    pub peer: Peer,
    /// The messages and unread count.
    pub conversation: Conversation,
    /// Names of the users in it.
    pub names: Vec<(u64, String)>,
}

/// A shared file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u32,
}

/// How a transfer is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStatus {
    /// Moving.
    Active,
    /// Finished.
    Done,
    /// Failed or cancelled; the text says which.
    Stopped(String),
}

/// An upload or download, with what the progress bar needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// The file name.
    pub name: String,
    /// Upload (true) or download.
    pub upload: bool,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// When it started (ms, page clock).
    pub started_ms: f64,
    /// When it last progressed.
    pub updated_ms: f64,
    /// How it is going.
    pub status: TransferStatus,
}

/// Where the sign-in form shows a refusal, and which field gets focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInField {
    /// The name was refused (in use, invalid, or anything not about the
    /// password): shown next to the name field.
    Name,
    /// The name is protected and no password was given: shown next to the
    /// name field, and the password field gets focus.
    Protected,
    /// The password was wrong or breaks the length rule: shown next to the
    /// password field.
    Password,
}

/// Why signing in failed, as the sign-in form shows it. It never holds the
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInError {
    /// The name that was tried, put back in the name field when the form
    /// appears anew (a resumed session after a reload that the server no
    /// longer knows, for a protected name).
    pub name: String,
    /// Where the words go.
    pub field: SignInField,
    /// The words.
    pub text: String,
}

impl SignInError {
    /// The refusal of the server (`code` and its `text`) of signing in as `name`.
    pub fn from_server(name: &str, code: ErrorCode, text: &str) -> Self {
        let (field, text) = match code {
            ErrorCode::NameInUse => (
                SignInField::Name,
                "That name is in use right now. Pick another.".to_owned(),
            ),
            ErrorCode::InvalidName => (
                SignInField::Name,
                format!("That name cannot be used: {text}"),
            ),
            ErrorCode::NameProtected => (SignInField::Protected, error_message(code, text)),
            ErrorCode::BadCredentials => (SignInField::Password, error_message(code, text)),
            // Too many wrong passwords: the wait is the server's text.
            ErrorCode::RateLimited => (
                SignInField::Password,
                as_sentence(text, "Too many attempts; wait a moment and try again."),
            ),
            _ => (SignInField::Name, error_message(code, text)),
        };
        SignInError {
            name: name.to_owned(),
            field,
            text,
        }
    }
}

/// The password to sign in with, as typed (`None`: sign in without one),
/// or why it cannot be sent, for next to the password field. A typed
/// password is always used, ticked `protect` or not: a protected name
/// signs in with it, and the server protects a free name with it either
/// way. `protect` only makes the password required.
pub fn password_to_send(password: &str, protect: bool) -> Result<Option<&str>, String> {
    if password.is_empty() {
        return if protect {
            Err(format!(
                "Choose a password (at least {MIN_PASSWORD} characters) to protect this name."
            ))
        } else {
            Ok(None)
        };
    }
    password_problem(password).map_or(Ok(Some(password)), Err)
}

/// Why a new password cannot be used (the length rule of the protocol,
/// counted in UTF-8 bytes), in words for next to its field.
pub fn password_problem(password: &str) -> Option<String> {
    let len = validate_password(password).err()?.0;
    Some(if len < MIN_PASSWORD {
        format!("A password needs at least {MIN_PASSWORD} characters; this one has {len}.")
    } else {
        format!("A password can be at most {MAX_PASSWORD} bytes long; this one has {len}.")
    })
}

/// Checks the new password and its repetition in the change-password form.
pub fn new_password_problem(new: &str, repeat: &str) -> Option<String> {
    password_problem(new)
        .or_else(|| (new != repeat).then(|| "The two new passwords are not the same.".to_owned()))
}

/// The change-password form (not persisted; it never holds a password).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PasswordForm {
    /// Not shown.
    #[default]
    Closed,
    /// Shown, waiting for the user.
    Editing,
    /// Sent; waiting for the server.
    Sending,
    /// The server changed (or set) the password.
    Changed,
    /// The change failed.
    Failed {
        /// Whether the current password was wrong (shown next to its field).
        current: bool,
        /// Why.
        text: String,
    },
}

impl PasswordForm {
    /// Whether the form is shown.
    pub fn is_open(&self) -> bool {
        *self != PasswordForm::Closed
    }
}

/// Everything the view shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// The connection.
    pub link: Link,
    /// Own user number and name, once signed in.
    pub me: Option<(u64, String)>,
    /// Why signing in failed, shown next to the field it concerns.
    pub sign_in_error: Option<SignInError>,
    /// Whether own name is protected by a password (as far as this page
    /// knows: kept across a reload, set when a password is set).
    pub protected: bool,
    /// The change-password form.
    pub password_form: PasswordForm,
    /// Known user names.
    pub names: HashMap<u64, String>,
    /// Users online now.
    pub online: Vec<u64>,
    /// Conversations, Everyone first. Kept in the history (IndexedDB), not
    /// in the tab's own snapshot.
    pub conversations: BTreeMap<Peer, Conversation>,
    /// The open conversation.
    pub active: Option<Peer>,
    /// What a phone shows.
    pub view: View,
    /// Whether desktop notifications are on (the user's choice, kept by
    /// the browser, not in this snapshot).
    pub notifications: bool,
    /// Other tabs of this browser signed in to this server: name → session.
    pub other_tabs: BTreeMap<String, u64>,
    /// Another tab of this browser said it takes this tab's session.
    pub moved_to_tab: bool,
    /// Where the "new messages" marker is: the open conversation and the
    /// delivery number of the first message that was unread when it was
    /// opened.
    pub marker: Option<(Peer, u64)>,
    /// Whether the history kept on this device has been read (it arrives
    /// after the page has opened).
    pub history_loaded: bool,
    /// Shared files.
    pub files: BTreeMap<u64, FileEntry>,
    /// Transfers of this page (not persisted).
    pub transfers: BTreeMap<u64, Transfer>,
    /// A passing notice (errors not tied to a control).
    pub notice: Option<String>,
}

/// Everything that changes the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The connection changed.
    Link(Link),
    /// Signed in (or resumed).
    SignedIn {
        /// Own user number.
        user: u64,
        /// Own name.
        name: String,
        /// Whether the name is protected by a password; `None` when not
        /// known (a session resumed after a reload): unchanged.
        protected: Option<bool>,
    },
    /// Signing in failed.
    SignInFailed(SignInError),
    /// Signed out by the user.
    SignedOut,
    /// Users online now.
    Online(Vec<u64>),
    /// A user's name.
    Name(u64, String),
    /// The file list.
    Files(Vec<u64>),
    /// One file's name and size.
    File(u64, FileEntry),
    /// An own message was handed to the core.
    Sending {
        /// The conversation.
        peer: Peer,
        /// The core's message number.
        number: u64,
        /// The text.
        text: String,
        /// The wall clock, ms since the Unix epoch.
        at_ms: u64,
    },
    /// The server stored an own message.
    Sent(u64),
    /// The server refused an own message.
    Failed {
        /// The message number.
        number: u64,
        /// Why.
        reason: String,
    },
    /// Forget a failed message (before retrying it).
    Discard(u64),
    /// A message arrived.
    Incoming {
        /// The sender.
        from: u64,
        /// The server's delivery number.
        delivery: u64,
        /// Whether it was a broadcast.
        broadcast: bool,
        /// The text.
        text: String,
        /// The wall clock when it arrived, ms since the Unix epoch.
        at_ms: u64,
    },
    /// Another tab or device took this session over.
    SessionMoved,
    /// The history kept on this device was read: merged under what arrived
    /// since the page opened.
    HistoryLoaded(Vec<Stored>),
    /// Open a conversation (on a phone, show it).
    Open(Peer),
    /// Show a view (on a phone).
    Show(View),
    /// Desktop notifications were turned on or off.
    Notifications(bool),
    /// Another tab is signed in as this name, with this session.
    TabHere(String, u64),
    /// Another tab is no longer signed in as this name.
    TabGone(String),
    /// Another tab takes the session of this name.
    TabTook(String),
    /// A transfer started.
    TransferStarted {
        /// The core's transfer id.
        id: u64,
        /// The file name.
        name: String,
        /// Upload or download.
        upload: bool,
        /// Bytes in all.
        total: u64,
        /// The page clock.
        now_ms: f64,
    },
    /// A transfer progressed.
    Progress {
        /// The transfer.
        id: u64,
        /// Bytes done.
        done: u64,
        /// The page clock.
        now_ms: f64,
    },
    /// A transfer ended.
    TransferEnded {
        /// The transfer.
        id: u64,
        /// `None` when it finished, else why it stopped.
        error: Option<String>,
        /// The page clock: progress is shown at most every 100 ms, so the
        /// end time makes the final speed right.
        now_ms: f64,
    },
    /// Remove a finished transfer from the list.
    DismissTransfer(u64),
    /// Show or clear a notice.
    Notice(Option<String>),
    /// Open (`true`) or close the change-password form.
    PasswordForm(bool),
    /// A password change was sent to the server.
    PasswordChangeSent,
    /// The server changed (or set) the password.
    PasswordChanged,
    /// Changing the password failed.
    PasswordChangeFailed {
        /// Whether the current password was wrong.
        current: bool,
        /// Why.
        text: String,
    },
}

impl State {
    /// A user's display name.
    pub fn name_of(&self, user: u64) -> String {
        self.names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("user {user}"))
    }

    /// The conversation for `peer`, created on first use.
    fn conversation(&mut self, peer: Peer) -> &mut Conversation {
        self.conversations.entry(peer).or_default()
    }

    fn own_message(&mut self, number: u64) -> Option<&mut Message> {
        self.conversations
            .values_mut()
            .flat_map(|c| c.messages.iter_mut())
            .find(|m| matches!(m.own, Some((n, _)) if n == number))
    }

    /// Applies one action.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Link(link) => {
                // The answer to a change in flight is lost with the connection.
                if self.password_form == PasswordForm::Sending && link != Link::Online {
                    self.password_form = PasswordForm::Failed {
                        current: false,
                        text: "The connection was lost before the server answered; the password \
                               may not have changed. Try again once connected."
                            .into(),
                    };
                }
                self.link = link;
            }
            Action::SignedIn {
                user,
                name,
                protected,
            } => {
                if let Some(p) = protected {
                    self.protected = p;
                }
                self.names.insert(user, name.clone());
                self.other_tabs.remove(&name);
                self.me = Some((user, name));
                self.sign_in_error = None;
                self.moved_to_tab = false;
                self.link = Link::Online;
                self.conversation(Peer::Everyone);
                if self.active.is_none() {
                    self.active = Some(Peer::Everyone);
                }
            }
            Action::SignInFailed(reason) => {
                self.sign_in_error = Some(reason);
                self.me = None;
                self.password_form = PasswordForm::Closed;
            }
            Action::SignedOut => {
                *self = State {
                    notifications: self.notifications,
                    other_tabs: std::mem::take(&mut self.other_tabs),
                    ..State::default()
                }
            }
            Action::Online(users) => self.online = users,
            Action::Name(user, name) => {
                self.names.insert(user, name);
            }
            Action::Files(list) => self.files.retain(|f, _| list.contains(f)),
            Action::File(file, entry) => {
                self.files.insert(file, entry);
            }
            Action::Sending {
                peer,
                number,
                text,
                at_ms,
            } => {
                let from = self.me.as_ref().map_or(0, |(u, _)| *u);
                let c = self.conversation(peer);
                c.messages.push(Message {
                    from,
                    text,
                    own: Some((number, Delivery::Sending)),
                    delivery: None,
                    at_ms,
                });
                trim(c);
            }
            Action::Sent(number) => {
                if let Some(m) = self.own_message(number) {
                    m.own = Some((number, Delivery::Sent));
                }
            }
            Action::Failed { number, reason } => {
                if let Some(m) = self.own_message(number) {
                    m.own = Some((number, Delivery::Failed(reason)));
                }
            }
            Action::Discard(number) => {
                for c in self.conversations.values_mut() {
                    c.messages
                        .retain(|m| !matches!(m.own, Some((n, _)) if n == number));
                }
            }
            Action::Incoming {
                from,
                delivery,
                broadcast,
                text,
                at_ms,
            } => {
                let peer = if broadcast {
                    Peer::Everyone
                } else {
                    Peer::User(from)
                };
                let open = self.active == Some(peer);
                let c = self.conversation(peer);
                // A redelivery after a reload or reconnect is shown once.
                if c.messages.iter().any(|m| m.delivery == Some(delivery)) {
                    return;
                }
                c.messages.push(Message {
                    from,
                    text,
                    own: None,
                    delivery: Some(delivery),
                    at_ms,
                });
                if !open {
                    if c.unread == 0 {
                        c.first_unread = Some(delivery);
                    }
                    c.unread += 1;
                }
                trim(c);
            }
            Action::SessionMoved => {
                self.notice = Some(if self.moved_to_tab {
                    "This chat moved to another tab of this browser; \"Use here\" brings it back."
                        .into()
                } else {
                    "This chat was opened in another tab or window.".into()
                });
            }
            Action::Open(peer) => {
                let c = self.conversation(peer);
                let first = c.first_unread.take().filter(|_| c.unread > 0);
                c.unread = 0;
                self.marker = first.map(|d| (peer, d));
                self.active = Some(peer);
                self.view = View::Conversation;
            }
            Action::Show(view) => self.view = view,
            Action::Notifications(on) => self.notifications = on,
            Action::TabHere(name, session) => {
                self.other_tabs.insert(name, session);
            }
            Action::TabGone(name) => {
                self.other_tabs.remove(&name);
            }
            Action::TabTook(name) => {
                if self.me.as_ref().is_some_and(|(_, me)| *me == name) {
                    self.moved_to_tab = true;
                }
                self.other_tabs.remove(&name);
            }
            Action::HistoryLoaded(stored) => {
                self.merge_history(stored);
                self.history_loaded = true;
            }
            Action::TransferStarted {
                id,
                name,
                upload,
                total,
                now_ms,
            } => {
                self.transfers.insert(
                    id,
                    Transfer {
                        name,
                        upload,
                        done: 0,
                        total,
                        started_ms: now_ms,
                        updated_ms: now_ms,
                        status: TransferStatus::Active,
                    },
                );
            }
            Action::Progress { id, done, now_ms } => {
                if let Some(t) = self.transfers.get_mut(&id) {
                    t.done = done;
                    t.updated_ms = now_ms;
                }
            }
            Action::TransferEnded { id, error, now_ms } => {
                if let Some(t) = self.transfers.get_mut(&id) {
                    t.status = match error {
                        None => {
                            t.done = t.total;
                            t.updated_ms = now_ms;
                            TransferStatus::Done
                        }
                        Some(e) => TransferStatus::Stopped(e),
                    };
                }
            }
            Action::DismissTransfer(id) => {
                self.transfers.remove(&id);
            }
            Action::Notice(n) => self.notice = n,
            Action::PasswordForm(open) => {
                self.password_form = if open && self.me.is_some() {
                    PasswordForm::Editing
                } else {
                    PasswordForm::Closed
                };
            }
            Action::PasswordChangeSent => {
                if self.password_form.is_open() {
                    self.password_form = PasswordForm::Sending;
                }
            }
            Action::PasswordChanged => {
                self.protected = true;
                if self.password_form.is_open() {
                    self.password_form = PasswordForm::Changed;
                } else {
                    self.notice = Some("Your password was changed.".into());
                }
            }
            Action::PasswordChangeFailed { current, text } => {
                if self.password_form.is_open() {
                    self.password_form = PasswordForm::Failed { current, text };
                } else {
                    self.notice = Some(format!("Your password was not changed: {text}"));
                }
            }
        }
    }

    /// Puts the kept history under what this page has shown since it
    /// opened. The page that was sending the kept history's unconfirmed
    /// messages is gone, and this page's core does not hold them, so they
    /// cannot be confirmed any more: they are shown as failed, with Retry.
    fn merge_history(&mut self, stored: Vec<Stored>) {
        for Stored {
            peer,
            conversation: mut kept,
            names,
        } in stored
        {
            for (user, name) in names {
                self.names.entry(user).or_insert(name);
            }
            for m in &mut kept.messages {
                if let Some((n, Delivery::Sending)) = m.own {
                    m.own = Some((
                        n,
                        Delivery::Failed("not confirmed before the page was closed".into()),
                    ));
                }
            }
            let open = self.active == Some(peer);
            let c = self.conversation(peer);
            let mut messages = kept.messages;
            for m in c.messages.drain(..) {
                if !messages.iter().any(|k| k.same_as(&m)) {
                    messages.push(m);
                }
            }
            c.messages = messages;
            if !open {
                if c.unread == 0 {
                    c.first_unread = kept.first_unread;
                }
                c.unread += kept.unread;
            }
            trim(c);
        }
    }

    /// A conversation as the history keeps it, with the names it needs.
    pub fn stored(&self, peer: Peer) -> Option<Stored> {
        let conversation = self.conversations.get(&peer)?.clone();
        let mut users: Vec<u64> = conversation.messages.iter().map(|m| m.from).collect();
        if let Peer::User(u) = peer {
            users.push(u);
        }
        users.sort_unstable();
        users.dedup();
        let names = users
            .into_iter()
            .filter_map(|u| Some((u, self.names.get(&u)?.clone())))
            .collect();
        Some(Stored {
            peer,
            conversation,
            names,
        })
    }

    /// Unread messages over every conversation but the open one.
    pub fn total_unread(&self) -> u32 {
        self.conversations.values().map(|c| c.unread).sum()
    }
}

/// An error from the server as a sentence a person understands: the
/// shared sentence of the codes a person can act on (mailbox full, disk
/// full, busy, too many connections, sign-in timeout, wrong password),
/// else the code's description and the server's text.
pub fn error_message(code: ErrorCode, text: &str) -> String {
    let words = code.words(text);
    let mut chars = words.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if code.sentence().is_some() {
        out.push('.');
    }
    out
}

/// The server's `text` as a sentence (capital first letter, full stop),
/// or `fallback` when it is empty.
pub fn as_sentence(text: &str, fallback: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return fallback.to_owned();
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

fn trim(c: &mut Conversation) {
    if c.messages.len() > HISTORY {
        let extra = c.messages.len() - HISTORY;
        c.messages.drain(..extra);
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn signed_in() -> State {
        let mut s = State::default();
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: Some(false),
        });
        s
    }

    fn incoming(from: u64, delivery: u64, broadcast: bool) -> Action {
        Action::Incoming {
            from,
            delivery,
            broadcast,
            text: format!("#{delivery}"),
            at_ms: 1_000_000_000_000,
        }
    }

    #[test]
    fn signing_in_opens_everyone() {
        let s = signed_in();
        assert_eq!(s.active, Some(Peer::Everyone));
        assert_eq!(s.link, Link::Online);
        assert_eq!(s.name_of(1), "me");
        assert_eq!(s.name_of(9), "user 9");
    }

    #[test]
    fn a_failed_sign_in_is_shown_and_cleared_by_success() {
        let mut s = State::default();
        s.apply(Action::SignInFailed(SignInError::from_server(
            "me",
            ErrorCode::NameInUse,
            "",
        )));
        let e = s.sign_in_error.clone().unwrap();
        assert_eq!(e.field, SignInField::Name);
        assert!(e.text.contains("in use"));
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: Some(false),
        });
        assert_eq!(s.sign_in_error, None);
    }

    #[test]
    fn a_protected_name_asks_for_its_password_and_a_wrong_one_is_shown_at_the_password() {
        let e = SignInError::from_server("ann", ErrorCode::NameProtected, "");
        assert_eq!(e.field, SignInField::Protected);
        assert_eq!(e.name, "ann");
        assert!(e.text.starts_with("This name is protected"), "{}", e.text);
        let e = SignInError::from_server("ann", ErrorCode::BadCredentials, "no");
        assert_eq!(e.field, SignInField::Password);
        assert_eq!(e.text, "Wrong name or password.");
        let e = SignInError::from_server("ann", ErrorCode::Busy, "");
        assert_eq!(e.field, SignInField::Name);
        let e = SignInError::from_server("ann", ErrorCode::RateLimited, "try again in 2 s");
        assert_eq!(e.field, SignInField::Password);
        assert_eq!(e.text, "Try again in 2 s.");
    }

    #[test]
    fn server_texts_read_as_sentences() {
        assert_eq!(
            as_sentence("the current password is wrong", "x"),
            "The current password is wrong."
        );
        assert_eq!(as_sentence("  ", "Fallback."), "Fallback.");
        assert_eq!(as_sentence("done.", "x"), "Done.");
    }

    #[test]
    fn a_typed_password_is_checked_and_always_used() {
        assert_eq!(password_to_send("", false), Ok(None));
        assert!(password_to_send("", true).is_err(), "protecting needs one");
        assert_eq!(password_to_send("12345678", false), Ok(Some("12345678")));
        assert_eq!(password_to_send("12345678", true), Ok(Some("12345678")));
        let short = password_to_send("1234567", false).unwrap_err();
        assert!(short.contains("at least 8"), "{short}");
        let long = "x".repeat(1025);
        assert!(password_to_send(&long, true).unwrap_err().contains("1024"));
        assert_eq!(password_problem(&"x".repeat(1024)), None);
        // Counted in bytes, as the protocol does: three 3-byte characters.
        assert_eq!(password_problem("日本語"), None);
    }

    #[test]
    fn the_new_password_must_be_valid_and_repeated() {
        assert!(new_password_problem("short", "short").is_some());
        assert!(new_password_problem("long enough", "long enougH")
            .unwrap()
            .contains("not the same"));
        assert_eq!(new_password_problem("long enough", "long enough"), None);
    }

    #[test]
    fn changing_the_password_goes_from_editing_to_sending_to_changed() {
        let mut s = signed_in();
        assert!(!s.protected);
        s.apply(Action::PasswordForm(true));
        assert_eq!(s.password_form, PasswordForm::Editing);
        s.apply(Action::PasswordChangeSent);
        assert_eq!(s.password_form, PasswordForm::Sending);
        s.apply(Action::PasswordChanged);
        assert_eq!(s.password_form, PasswordForm::Changed);
        assert!(s.protected, "the name is protected now");
        assert_eq!(s.notice, None);
        s.apply(Action::PasswordForm(false));
        assert!(!s.password_form.is_open());
    }

    #[test]
    fn a_failed_change_is_shown_in_the_form_or_as_a_notice_when_it_was_closed() {
        let mut s = signed_in();
        s.apply(Action::PasswordForm(true));
        s.apply(Action::PasswordChangeSent);
        s.apply(Action::PasswordChangeFailed {
            current: true,
            text: "The current password is wrong.".into(),
        });
        assert_eq!(
            s.password_form,
            PasswordForm::Failed {
                current: true,
                text: "The current password is wrong.".into()
            }
        );
        assert!(!s.protected);
        s.apply(Action::PasswordForm(false));
        s.apply(Action::PasswordChangeFailed {
            current: false,
            text: "server error".into(),
        });
        assert_eq!(s.password_form, PasswordForm::Closed);
        assert!(s.notice.as_deref().unwrap().contains("server error"));
        s.apply(Action::PasswordChanged);
        assert_eq!(s.notice.as_deref(), Some("Your password was changed."));
    }

    #[test]
    fn a_change_in_flight_fails_when_the_connection_drops() {
        let mut s = signed_in();
        s.apply(Action::PasswordForm(true));
        s.apply(Action::PasswordChangeSent);
        s.apply(Action::Link(Link::Reconnecting {
            retry_in_ms: 500,
            reason: "closed".into(),
        }));
        assert!(matches!(
            s.password_form,
            PasswordForm::Failed { current: false, .. }
        ));
    }

    #[test]
    fn the_form_opens_only_when_signed_in_and_closes_on_sign_out() {
        let mut s = State::default();
        s.apply(Action::PasswordForm(true));
        assert_eq!(s.password_form, PasswordForm::Closed);
        let mut s = signed_in();
        s.apply(Action::PasswordForm(true));
        s.apply(Action::SignedOut);
        assert_eq!(s.password_form, PasswordForm::Closed);
        assert!(!s.protected);
    }

    #[test]
    fn a_resumed_session_keeps_what_is_known_about_the_password() {
        let mut s = State::default();
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: Some(true),
        });
        // As the tab's snapshot brings it back after a reload (record.rs).
        let mut back = State {
            me: s.me.clone(),
            protected: s.protected,
            ..State::default()
        };
        back.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: None,
        });
        assert!(back.protected);
    }

    #[test]
    fn own_messages_go_from_sending_to_sent_or_failed() {
        let mut s = signed_in();
        for n in [10, 11] {
            s.apply(Action::Sending {
                peer: Peer::User(2),
                number: n,
                text: "hi".into(),
                at_ms: 1_000_000_000_000,
            });
        }
        s.apply(Action::Sent(10));
        s.apply(Action::Failed {
            number: 11,
            reason: "rate limited".into(),
        });
        let msgs = &s.conversations[&Peer::User(2)].messages;
        assert_eq!(msgs[0].own, Some((10, Delivery::Sent)));
        assert_eq!(
            msgs[1].own,
            Some((11, Delivery::Failed("rate limited".into())))
        );
        s.apply(Action::Discard(11));
        assert_eq!(s.conversations[&Peer::User(2)].messages.len(), 1);
    }

    #[test]
    fn a_phone_goes_from_the_list_to_a_conversation_and_back_and_to_the_files() {
        let mut s = signed_in();
        assert_eq!(s.view, View::List, "a phone starts at the list");
        s.apply(Action::Open(Peer::User(2)));
        assert_eq!(s.view, View::Conversation);
        s.apply(Action::Show(View::List));
        assert_eq!(s.view, View::List);
        assert_eq!(
            s.active,
            Some(Peer::User(2)),
            "still the open one on wide screens"
        );
        s.apply(Action::Show(View::Files));
        assert_eq!(s.view, View::Files);
        s.apply(Action::SignedOut);
        assert_eq!(s.view, View::List);
    }

    #[test]
    fn a_session_taken_by_a_tab_of_this_browser_says_so() {
        let mut s = signed_in();
        s.apply(Action::SessionMoved);
        assert!(s
            .notice
            .as_deref()
            .unwrap()
            .contains("another tab or window"));
        s.apply(Action::TabTook("someone else".into()));
        assert!(!s.moved_to_tab);
        s.apply(Action::TabTook("me".into()));
        s.apply(Action::SessionMoved);
        assert!(s
            .notice
            .as_deref()
            .unwrap()
            .contains("another tab of this browser"));
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: None,
        });
        assert!(!s.moved_to_tab, "taken back");
    }

    #[test]
    fn other_tabs_are_listed_until_they_go() {
        let mut s = State::default();
        s.apply(Action::TabHere("ann".into(), 7));
        s.apply(Action::TabHere("bo".into(), 8));
        s.apply(Action::TabHere("ann".into(), 9));
        s.apply(Action::TabGone("bo".into()));
        assert_eq!(
            s.other_tabs.iter().collect::<Vec<_>>(),
            vec![(&"ann".to_owned(), &9)]
        );
        s.apply(Action::SignedIn {
            user: 1,
            name: "ann".into(),
            protected: None,
        });
        assert!(s.other_tabs.is_empty(), "taken here");
    }

    #[test]
    fn incoming_messages_count_as_unread_until_opened() {
        let mut s = signed_in();
        s.apply(incoming(2, 5, false));
        s.apply(incoming(3, 6 | 1 << 63, true));
        assert_eq!(s.conversations[&Peer::User(2)].unread, 1);
        assert_eq!(
            s.conversations[&Peer::Everyone].unread,
            0,
            "Everyone is open"
        );
        assert_eq!(s.total_unread(), 1);
        s.apply(Action::Open(Peer::User(2)));
        assert_eq!(s.total_unread(), 0);
        s.apply(incoming(2, 7, false));
        assert_eq!(s.conversations[&Peer::User(2)].unread, 0);
    }

    #[test]
    fn messages_still_sending_when_the_page_closed_are_offered_for_retry() {
        let mut old_page = signed_in();
        for n in [1, 2] {
            old_page.apply(Action::Sending {
                peer: Peer::Everyone,
                number: n,
                text: "hi".into(),
                at_ms: 1_000_000_000_000,
            });
        }
        old_page.apply(Action::Sent(1));
        let kept = old_page.stored(Peer::Everyone).unwrap();
        let mut s = signed_in();
        s.apply(Action::HistoryLoaded(vec![kept]));
        let msgs = &s.conversations[&Peer::Everyone].messages;
        assert_eq!(msgs[0].own.as_ref().map(|(_, d)| d.as_str()), Some("sent"));
        assert_eq!(
            msgs[1].own.as_ref().map(|(_, d)| d.as_str()),
            Some("failed")
        );
    }

    #[test]
    fn the_kept_history_goes_under_what_arrived_since_and_is_not_doubled() {
        let mut old_page = signed_in();
        old_page.apply(Action::Name(2, "bo".into()));
        old_page.apply(incoming(2, 5, false));
        old_page.apply(incoming(2, 6, false));
        let kept = old_page.stored(Peer::User(2)).unwrap();
        assert_eq!(kept.names, vec![(2, "bo".into())]);
        let mut s = signed_in();
        // Message 6 was redelivered (never acknowledged) and 7 is new.
        s.apply(incoming(2, 6, false));
        s.apply(incoming(2, 7, false));
        s.apply(Action::HistoryLoaded(vec![kept]));
        let c = &s.conversations[&Peer::User(2)];
        let order: Vec<_> = c.messages.iter().map(|m| m.delivery).collect();
        assert_eq!(order, vec![Some(5), Some(6), Some(7)]);
        assert_eq!(c.unread, 4, "2 kept + 2 new, counted as they arrived");
        assert_eq!(
            c.first_unread,
            Some(6),
            "the first that arrived on this page"
        );
        assert_eq!(s.name_of(2), "bo", "the kept name of a user not online");
    }

    #[test]
    fn kept_history_is_bounded_too() {
        let mut old_page = signed_in();
        for d in 0..HISTORY as u64 {
            old_page.apply(incoming(2, d, false));
        }
        let kept = old_page.stored(Peer::User(2)).unwrap();
        let mut s = signed_in();
        for d in 1000..1010 {
            s.apply(incoming(2, d, false));
        }
        s.apply(Action::HistoryLoaded(vec![kept]));
        let c = &s.conversations[&Peer::User(2)];
        assert_eq!(c.messages.len(), HISTORY);
        assert_eq!(c.messages[0].delivery, Some(10), "the oldest went first");
        assert_eq!(c.messages[HISTORY - 1].delivery, Some(1009));
    }

    #[test]
    fn opening_a_conversation_marks_where_the_unread_messages_start() {
        let mut s = signed_in();
        s.apply(incoming(2, 5, false));
        s.apply(Action::Open(Peer::User(2)));
        assert_eq!(s.marker, Some((Peer::User(2), 5)));
        s.apply(Action::Open(Peer::Everyone));
        assert_eq!(s.marker, None);
        s.apply(incoming(2, 6, false));
        s.apply(incoming(2, 7, false));
        s.apply(Action::Open(Peer::User(2)));
        assert_eq!(s.marker, Some((Peer::User(2), 6)));
        // Messages read while the conversation is open move no marker.
        s.apply(incoming(2, 8, false));
        assert_eq!(s.marker, Some((Peer::User(2), 6)));
        s.apply(Action::Open(Peer::Everyone));
        assert_eq!(s.marker, None);
    }

    #[test]
    fn a_redelivered_message_is_shown_once() {
        let mut s = signed_in();
        s.apply(incoming(2, 5, false));
        s.apply(incoming(2, 5, false));
        assert_eq!(s.conversations[&Peer::User(2)].messages.len(), 1);
        assert_eq!(s.conversations[&Peer::User(2)].unread, 1);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = signed_in();
        for d in 0..(HISTORY as u64 + 10) {
            s.apply(incoming(2, d, false));
        }
        let c = &s.conversations[&Peer::User(2)];
        assert_eq!(c.messages.len(), HISTORY);
        assert_eq!(c.messages[0].delivery, Some(10));
    }

    #[test]
    fn transfers_progress_and_end() {
        let mut s = signed_in();
        s.apply(Action::TransferStarted {
            id: 1,
            name: "a".into(),
            upload: true,
            total: 1000,
            now_ms: 0.0,
        });
        s.apply(Action::Progress {
            id: 1,
            done: 512,
            now_ms: 10.0,
        });
        assert_eq!(s.transfers[&1].done, 512);
        s.apply(Action::TransferEnded {
            id: 1,
            error: None,
            now_ms: 40.0,
        });
        assert_eq!(s.transfers[&1].status, TransferStatus::Done);
        assert_eq!(s.transfers[&1].done, 1000);
        assert_eq!(
            s.transfers[&1].updated_ms, 40.0,
            "the speed covers the whole transfer"
        );
        s.apply(Action::DismissTransfer(1));
        assert!(s.transfers.is_empty());
    }

    #[test]
    fn a_cancelled_transfer_keeps_its_progress_and_says_why() {
        let mut s = signed_in();
        s.apply(Action::TransferStarted {
            id: 2,
            name: "b".into(),
            upload: false,
            total: 1000,
            now_ms: 0.0,
        });
        s.apply(Action::Progress {
            id: 2,
            done: 256,
            now_ms: 5.0,
        });
        s.apply(Action::TransferEnded {
            id: 2,
            error: Some("cancelled".into()),
            now_ms: 9.0,
        });
        let t = &s.transfers[&2];
        assert_eq!(t.status, TransferStatus::Stopped("cancelled".into()));
        assert_eq!(t.done, 256);
    }

    #[test]
    fn the_file_list_drops_files_no_longer_listed() {
        let mut s = signed_in();
        let entry = FileEntry {
            name: "x".into(),
            size: 1,
        };
        s.apply(Action::File(1, entry.clone()));
        s.apply(Action::File(2, entry));
        s.apply(Action::Files(vec![2]));
        assert_eq!(s.files.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_conversation_is_kept_with_the_names_it_needs() {
        let mut s = signed_in();
        s.apply(Action::Name(2, "ann".into()));
        s.apply(Action::Name(3, "bob".into()));
        s.apply(incoming(2, 5, false));
        let kept = s.stored(Peer::User(2)).unwrap();
        assert_eq!(kept.conversation, s.conversations[&Peer::User(2)]);
        assert_eq!(
            kept.names,
            [(2, "ann".to_owned())],
            "only the names it needs"
        );
    }
}
