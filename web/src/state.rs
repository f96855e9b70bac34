//! The app's state and its reducer: pure logic, no browser calls, so it is
//! tested natively and in the browser alike.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use yew::Reducible;

/// Messages kept per conversation (older ones scroll away).
pub const HISTORY: usize = 500;

/// The WebSocket's state, always shown in the header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// A conversation: everyone (broadcasts) or one other user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// Broadcasts.
    Everyone,
    /// Direct messages with this user.
    User(u64),
}

/// Where an own message stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Sent, not yet acknowledged by the server.
    Sending,
    /// Stored by the server.
    Sent,
    /// Refused; the text says why.
    Failed(String),
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: u64,
    /// The text.
    pub text: String,
    /// For own messages: the client's message number and its state.
    pub own: Option<(u64, Delivery)>,
    /// For incoming messages: the server's delivery number.
    pub delivery: Option<u64>,
}

/// Messages and unread count of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Conversation {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Messages arrived while another conversation was open.
    pub unread: u32,
}

/// A shared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Everything the view shows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    /// The connection.
    pub link: Link,
    /// Own user number and name, once signed in.
    pub me: Option<(u64, String)>,
    /// Why signing in failed, shown next to the name field.
    pub sign_in_error: Option<String>,
    /// Known user names.
    pub names: HashMap<u64, String>,
    /// Users online now.
    pub online: Vec<u64>,
    /// Conversations, Everyone first.
    #[serde(with = "pairs")]
    pub conversations: BTreeMap<Peer, Conversation>,
    /// The open conversation.
    pub active: Option<Peer>,
    /// Shared files.
    pub files: BTreeMap<u64, FileEntry>,
    /// Transfers of this page (not persisted).
    #[serde(skip)]
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
    },
    /// Signing in failed.
    SignInFailed(String),
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
    },
    /// Open a conversation.
    Open(Peer),
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
            Action::Link(link) => self.link = link,
            Action::SignedIn { user, name } => {
                self.names.insert(user, name.clone());
                self.me = Some((user, name));
                self.sign_in_error = None;
                self.link = Link::Online;
                self.conversation(Peer::Everyone);
                if self.active.is_none() {
                    self.active = Some(Peer::Everyone);
                }
            }
            Action::SignInFailed(reason) => {
                self.sign_in_error = Some(reason);
                self.me = None;
            }
            Action::SignedOut => *self = State::default(),
            Action::Online(users) => self.online = users,
            Action::Name(user, name) => {
                self.names.insert(user, name);
            }
            Action::Files(list) => self.files.retain(|f, _| list.contains(f)),
            Action::File(file, entry) => {
                self.files.insert(file, entry);
            }
            Action::Sending { peer, number, text } => {
                let from = self.me.as_ref().map_or(0, |(u, _)| *u);
                let c = self.conversation(peer);
                c.messages.push(Message {
                    from,
                    text,
                    own: Some((number, Delivery::Sending)),
                    delivery: None,
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
                });
                if !open {
                    c.unread += 1;
                }
                trim(c);
            }
            Action::Open(peer) => {
                self.conversation(peer).unread = 0;
                self.active = Some(peer);
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
        }
    }

    /// Restored from storage after a reload: the new page's core does not
    /// hold the messages the old page was still sending, so they cannot be
    /// confirmed any more. They are shown as failed, with a retry action.
    pub fn after_reload(&mut self) {
        for m in self
            .conversations
            .values_mut()
            .flat_map(|c| c.messages.iter_mut())
        {
            if let Some((n, Delivery::Sending)) = m.own {
                m.own = Some((
                    n,
                    Delivery::Failed("not confirmed before the page was reloaded".into()),
                ));
            }
        }
    }

    /// Unread messages over every conversation but the open one.
    pub fn total_unread(&self) -> u32 {
        self.conversations.values().map(|c| c.unread).sum()
    }
}

/// JSON maps need string keys; conversations are stored as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Conversation, Peer};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<Peer, Conversation>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Peer, Conversation>, D::Error> {
        Ok(Vec::<(Peer, Conversation)>::deserialize(d)?
            .into_iter()
            .collect())
    }
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
        });
        s
    }

    fn incoming(from: u64, delivery: u64, broadcast: bool) -> Action {
        Action::Incoming {
            from,
            delivery,
            broadcast,
            text: format!("#{delivery}"),
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
        s.apply(Action::SignInFailed("name in use".into()));
        assert_eq!(s.sign_in_error.as_deref(), Some("name in use"));
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
        });
        assert_eq!(s.sign_in_error, None);
    }

    #[test]
    fn own_messages_go_from_sending_to_sent_or_failed() {
        let mut s = signed_in();
        for n in [10, 11] {
            s.apply(Action::Sending {
                peer: Peer::User(2),
                number: n,
                text: "hi".into(),
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
    fn messages_still_sending_at_a_reload_are_offered_for_retry() {
        let mut s = signed_in();
        for n in [1, 2] {
            s.apply(Action::Sending {
                peer: Peer::Everyone,
                number: n,
                text: "hi".into(),
            });
        }
        s.apply(Action::Sent(1));
        s.after_reload();
        let msgs = &s.conversations[&Peer::Everyone].messages;
        assert_eq!(msgs[0].own.as_ref().map(|(_, d)| d.as_str()), Some("sent"));
        assert_eq!(
            msgs[1].own.as_ref().map(|(_, d)| d.as_str()),
            Some("failed")
        );
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
    fn state_survives_a_round_trip_through_storage() {
        let mut s = signed_in();
        s.apply(incoming(2, 5, false));
        let json = serde_json::to_string(&s).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back.conversations, s.conversations);
        assert_eq!(back.me, s.me);
    }
}
