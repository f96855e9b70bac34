//! The event policy: what the app does about each event of the protocol
//! core. Pure (no browser, no clock, no randomness of its own), so every
//! rule is unit-tested, like the reducer in `state.rs`. The shell in
//! `mod.rs` carries out the [`Effect`]s.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use proto::{ErrorCode, Event, TransferId};

use crate::state::{as_sentence, error_message, Action, FileEntry, Link, SignInError};

/// The first reconnection delay, in milliseconds.
pub const FIRST_RETRY_MS: u32 = 500;
/// The longest reconnection delay, in milliseconds.
pub const MAX_RETRY_MS: u32 = 15_000;
/// At most one progress update per transfer this often, so a fast
/// transfer does not re-render the page for every WebSocket message.
pub const PROGRESS_EVERY_MS: f64 = 100.0;

/// How long to wait before reconnection attempt `attempt` (0 for the
/// first): capped exponential back-off with "equal jitter", half of the
/// delay fixed and half random (`random` in `[0, 1)`), so tabs that lost
/// their connection together (a gateway restart) do not come back in
/// lock-step, and none waits less than half the back-off.
pub fn retry_delay_ms(attempt: u32, random: f64) -> u32 {
    let capped = FIRST_RETRY_MS
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(MAX_RETRY_MS);
    let half = capped / 2;
    half + (f64::from(capped - half) * random.clamp(0.0, 1.0)) as u32
}

/// What the shell must do about an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Hand this to the view.
    Show(Action),
    /// Ask the server for a user's name.
    AskName(u64),
    /// Ask the server for a file's name and size.
    AskFile(u64),
    /// Ask the server for the online users and the file list.
    AskLists,
    /// Keep the session number, to resume after a reload.
    KeepSession(u64),
    /// The session is gone: forget its number.
    ForgetSession,
    /// Signing in failed for good: forget the name and the session.
    ForgetSignIn,
    /// Close the socket, if still open.
    Close,
    /// Connect again after a back-off; the text says why the last ended.
    Retry(String),
    /// Read the next slice of an upload's file and hand it to the core.
    Read {
        /// The upload.
        transfer: TransferId,
        /// Where in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// Bytes of a download, in order.
    DownloadData {
        /// The transfer.
        transfer: TransferId,
        /// The bytes.
        data: Bytes,
    },
    /// A transfer finished: a download has every byte (save it, then
    /// report how that went); an upload's file is on the server (ask for
    /// the file list).
    Finished(TransferId),
    /// A transfer stopped: drop what was assembled (download) or the file
    /// handle (upload).
    Dropped(TransferId),
}

/// What the policy remembers between events.
#[derive(Debug, Default)]
pub struct Policy {
    /// Whether the user is signed in (or signing in) and wants a connection.
    pub wanted: bool,
    /// Reconnection attempts since the last successful sign-in.
    pub attempts: u32,
    /// Whether the name is protected by a password, once this page knows
    /// (not after a reload, until signing in anew). The password itself
    /// lives only in the core's memory.
    pub protected: Option<bool>,
    /// Whether the core signs in with a password (given at sign-in, or set
    /// since): a new session is then one of a protected name.
    pub with_password: bool,
    names_asked: HashSet<u64>,
    files_asked: HashSet<u64>,
    /// When each transfer's progress was last shown (page clock, ms).
    progress_shown: HashMap<TransferId, f64>,
}

impl Policy {
    /// The delay before the next reconnection attempt, counting it.
    pub fn next_retry_ms(&mut self, random: f64) -> u32 {
        let delay = retry_delay_ms(self.attempts, random);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// The user asked to connect now: start the back-off over.
    pub fn reset_retries(&mut self) {
        self.attempts = 0;
    }

    /// A transfer was cancelled by the user.
    pub fn forget_transfer(&mut self, transfer: TransferId) {
        self.progress_shown.remove(&transfer);
    }

    /// Signed out: forget everything about the last user.
    pub fn reset(&mut self) {
        *self = Policy::default();
    }

    /// The user list named someone whose name this page has not asked for.
    fn ask_name(&mut self, user: u64, out: &mut Vec<Effect>) {
        if self.names_asked.insert(user) {
            out.push(Effect::AskName(user));
        }
    }

    /// What to do about `event`. `name` is the core's name (for words
    /// about a refused sign-in); `now_ms` the page clock (for progress);
    /// `wall_ms` the wall clock (when a message arrived, to show).
    pub fn on_event(&mut self, event: Event, name: &str, now_ms: f64, wall_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::SignedIn {
                user,
                session,
                resumed,
            } => {
                out.push(Effect::KeepSession(session));
                if !resumed {
                    self.protected = Some(self.with_password);
                }
                self.attempts = 0;
                // Answers lost with the last connection are asked again.
                self.names_asked.clear();
                self.files_asked.clear();
                self.names_asked.insert(user);
                out.push(Effect::Show(Action::SignedIn {
                    user,
                    name: name.to_owned(),
                    protected: self.protected,
                }));
                out.push(Effect::AskLists);
            }
            Event::SignInFailed { code, text } => {
                self.wanted = false;
                out.push(Effect::ForgetSignIn);
                out.push(Effect::Close);
                out.push(Effect::Show(Action::Link(Link::Offline)));
                out.push(Effect::Show(Action::SignInFailed(
                    SignInError::from_server(name, code, &text),
                )));
            }
            Event::SessionLost => out.push(Effect::ForgetSession),
            Event::PasswordChanged { .. } => {
                self.protected = Some(true);
                self.with_password = true;
                out.push(Effect::Show(Action::PasswordChanged));
            }
            Event::PasswordChangeFailed { code, text } => {
                let current = code == ErrorCode::BadCredentials;
                out.push(Effect::Show(Action::PasswordChangeFailed {
                    current,
                    text: if current {
                        // The server says which: wrong, or none to give.
                        as_sentence(&text, "The current password is wrong.")
                    } else {
                        error_message(code, &text)
                    },
                }));
            }
            Event::Disconnected { code, text } => {
                if code == ErrorCode::SessionMoved {
                    // Another tab (or device) resumed this session: let it
                    // have it; the user can take it back.
                    self.wanted = false;
                    out.push(Effect::Show(Action::SessionMoved));
                } else if code.sentence().is_some() {
                    out.push(Effect::Show(Action::Notice(Some(error_message(
                        code, &text,
                    )))));
                } else if code != ErrorCode::BadSession {
                    out.push(Effect::Show(Action::Notice(Some(text.clone()))));
                }
                // The core asks the shell to close; the server closes too,
                // but a half-open socket must not keep us waiting.
                out.push(Effect::Close);
                if self.wanted {
                    out.push(Effect::Retry(format!("{code}: {text}")));
                } else {
                    out.push(Effect::Show(Action::Link(Link::Offline)));
                }
            }
            Event::Users(users) => {
                for &u in &users {
                    self.ask_name(u, &mut out);
                }
                out.push(Effect::Show(Action::Online(users)));
            }
            Event::UserName { user, name } => out.push(Effect::Show(Action::Name(user, name))),
            Event::Files(files) => {
                for &f in &files {
                    if self.files_asked.insert(f) {
                        out.push(Effect::AskFile(f));
                    }
                }
                out.push(Effect::Show(Action::Files(files)));
            }
            Event::FileInfo { file, size, name } => {
                out.push(Effect::Show(Action::File(file, FileEntry { name, size })))
            }
            Event::MessageSent { message } => out.push(Effect::Show(Action::Sent(message))),
            Event::MessageFailed {
                message,
                code,
                text,
            } => out.push(Effect::Show(Action::Failed {
                number: message,
                reason: error_message(code, &text),
            })),
            Event::Incoming {
                from,
                message,
                broadcast,
                body,
            } => {
                self.ask_name(from, &mut out);
                out.push(Effect::Show(Action::Incoming {
                    from,
                    delivery: message,
                    broadcast,
                    text: String::from_utf8_lossy(&body).into_owned(),
                    at_ms: wall_ms,
                }));
            }
            Event::TransferStarted { .. } => {}
            Event::UploadWants {
                transfer,
                offset,
                len,
            } => out.push(Effect::Read {
                transfer,
                offset,
                len,
            }),
            Event::DownloadData { transfer, data, .. } => {
                out.push(Effect::DownloadData { transfer, data })
            }
            Event::TransferProgress { transfer, done, .. } => {
                let last = self.progress_shown.get(&transfer).copied();
                if last.is_none_or(|t| now_ms - t >= PROGRESS_EVERY_MS) {
                    self.progress_shown.insert(transfer, now_ms);
                    out.push(Effect::Show(Action::Progress {
                        id: transfer,
                        done,
                        now_ms,
                    }));
                }
            }
            Event::TransferComplete { transfer, .. } => {
                self.progress_shown.remove(&transfer);
                out.push(Effect::Finished(transfer));
            }
            Event::TransferFailed {
                transfer,
                code,
                text,
            } => {
                self.progress_shown.remove(&transfer);
                out.push(Effect::Dropped(transfer));
                out.push(Effect::Show(Action::TransferEnded {
                    id: transfer,
                    error: Some(error_message(code, &text)),
                    now_ms,
                }));
            }
            Event::ServerError { code, text, .. } => {
                out.push(Effect::Show(Action::Notice(Some(match code.sentence() {
                    Some(_) => error_message(code, &text),
                    None => text,
                }))))
            }
        }
        out
    }

    /// The socket closed by itself (not by [`Effect::Close`]): try again if
    /// a connection is still wanted.
    pub fn socket_closed(&mut self, reason: String) -> Vec<Effect> {
        if self.wanted {
            vec![Effect::Retry(reason)]
        } else {
            vec![Effect::Show(Action::Link(Link::Offline))]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn signed_in(policy: &mut Policy, resumed: bool) -> Vec<Effect> {
        policy.on_event(
            Event::SignedIn {
                user: 1,
                session: 77,
                resumed,
            },
            "ann",
            0.0,
            1_000_000_000_000,
        )
    }

    #[test]
    fn the_back_off_doubles_up_to_its_cap_with_half_of_it_random() {
        assert_eq!(retry_delay_ms(0, 0.0), FIRST_RETRY_MS / 2);
        assert_eq!(retry_delay_ms(0, 0.999_999), FIRST_RETRY_MS - 1);
        assert_eq!(retry_delay_ms(1, 0.0), FIRST_RETRY_MS);
        assert_eq!(retry_delay_ms(3, 0.0), FIRST_RETRY_MS * 4);
        for attempt in [5, 6, 31, 32, 1000, u32::MAX] {
            assert_eq!(retry_delay_ms(attempt, 0.0), MAX_RETRY_MS / 2);
            assert_eq!(retry_delay_ms(attempt, 1.0), MAX_RETRY_MS);
        }
        // Two tabs with different random draws wait different times.
        assert_ne!(retry_delay_ms(4, 0.1), retry_delay_ms(4, 0.9));
        // Out-of-range randomness cannot go past the bounds.
        assert_eq!(retry_delay_ms(0, -3.0), FIRST_RETRY_MS / 2);
        assert_eq!(retry_delay_ms(0, 7.0), FIRST_RETRY_MS);
    }

    #[test]
    fn attempts_count_up_and_a_sign_in_starts_them_over() {
        let mut p = Policy::default();
        assert_eq!(p.next_retry_ms(0.0), FIRST_RETRY_MS / 2);
        assert_eq!(p.next_retry_ms(0.0), FIRST_RETRY_MS);
        assert_eq!(p.next_retry_ms(0.0), FIRST_RETRY_MS * 2);
        signed_in(&mut p, true);
        assert_eq!(p.next_retry_ms(0.0), FIRST_RETRY_MS / 2);
        p.next_retry_ms(0.0);
        p.reset_retries();
        assert_eq!(p.attempts, 0);
    }

    #[test]
    fn signing_in_keeps_the_session_shows_the_user_and_asks_for_the_lists() {
        let mut p = Policy {
            with_password: true,
            ..Policy::default()
        };
        let out = signed_in(&mut p, false);
        assert_eq!(
            out,
            vec![
                Effect::KeepSession(77),
                Effect::Show(Action::SignedIn {
                    user: 1,
                    name: "ann".into(),
                    protected: Some(true),
                }),
                Effect::AskLists,
            ]
        );
    }

    #[test]
    fn a_resumed_session_does_not_claim_to_know_about_the_password() {
        let mut p = Policy::default();
        let out = signed_in(&mut p, true);
        assert!(out.contains(&Effect::Show(Action::SignedIn {
            user: 1,
            name: "ann".into(),
            protected: None,
        })));
    }

    #[test]
    fn names_and_files_are_asked_once_per_connection() {
        let mut p = Policy::default();
        signed_in(&mut p, false);
        let out = p.on_event(Event::Users(vec![1, 2, 3]), "ann", 0.0, 1_000_000_000_000);
        assert_eq!(
            out,
            vec![
                Effect::AskName(2),
                Effect::AskName(3),
                Effect::Show(Action::Online(vec![1, 2, 3])),
            ],
            "not our own name, which the sign-in gave"
        );
        let out = p.on_event(Event::Users(vec![2, 3]), "ann", 0.0, 1_000_000_000_000);
        assert_eq!(out, vec![Effect::Show(Action::Online(vec![2, 3]))]);
        let out = p.on_event(Event::Files(vec![9, 9]), "ann", 0.0, 1_000_000_000_000);
        assert_eq!(
            out,
            vec![Effect::AskFile(9), Effect::Show(Action::Files(vec![9, 9]))]
        );
        // A new connection may have lost the answers: ask again.
        signed_in(&mut p, true);
        let out = p.on_event(Event::Users(vec![2]), "ann", 0.0, 1_000_000_000_000);
        assert_eq!(out[0], Effect::AskName(2));
    }

    #[test]
    fn a_message_from_a_stranger_asks_for_their_name() {
        let mut p = Policy::default();
        let out = p.on_event(
            Event::Incoming {
                from: 5,
                message: 40,
                broadcast: true,
                body: Bytes::from_static(b"hi \xff"),
            },
            "ann",
            0.0,
            1_000_000_000_000,
        );
        assert_eq!(out[0], Effect::AskName(5));
        assert_eq!(
            out[1],
            Effect::Show(Action::Incoming {
                from: 5,
                delivery: 40,
                broadcast: true,
                text: "hi \u{fffd}".into(),
                at_ms: 1_000_000_000_000,
            }),
            "invalid UTF-8 from a peer is shown, not a crash"
        );
    }

    #[test]
    fn a_refused_sign_in_stops_trying_and_forgets_the_name() {
        let mut p = Policy {
            wanted: true,
            ..Policy::default()
        };
        let out = p.on_event(
            Event::SignInFailed {
                code: ErrorCode::NameInUse,
                text: String::new(),
            },
            "ann",
            0.0,
            1_000_000_000_000,
        );
        assert!(!p.wanted);
        assert_eq!(
            &out[..3],
            &[
                Effect::ForgetSignIn,
                Effect::Close,
                Effect::Show(Action::Link(Link::Offline)),
            ]
        );
        assert!(matches!(&out[3], Effect::Show(Action::SignInFailed(e)) if e.name == "ann"));
        assert_eq!(
            p.socket_closed("closed".into()),
            vec![Effect::Show(Action::Link(Link::Offline))]
        );
    }

    #[test]
    fn a_dropped_connection_is_retried_while_wanted() {
        let mut p = Policy {
            wanted: true,
            ..Policy::default()
        };
        assert_eq!(
            p.socket_closed("gone".into()),
            vec![Effect::Retry("gone".into())]
        );
        let out = p.on_event(
            Event::Disconnected {
                code: ErrorCode::Busy,
                text: "full".into(),
            },
            "ann",
            0.0,
            1_000_000_000_000,
        );
        assert!(matches!(out[0], Effect::Show(Action::Notice(Some(_)))));
        assert_eq!(out[1], Effect::Close);
        assert!(matches!(&out[2], Effect::Retry(why) if why.contains("full")));
    }

    #[test]
    fn a_session_taken_by_another_tab_is_let_go() {
        let mut p = Policy {
            wanted: true,
            ..Policy::default()
        };
        let out = p.on_event(
            Event::Disconnected {
                code: ErrorCode::SessionMoved,
                text: String::new(),
            },
            "ann",
            0.0,
            1_000_000_000_000,
        );
        assert!(!p.wanted, "no reconnection to take it back by itself");
        assert_eq!(
            out,
            vec![
                Effect::Show(Action::SessionMoved),
                Effect::Close,
                Effect::Show(Action::Link(Link::Offline)),
            ]
        );
    }

    #[test]
    fn progress_is_shown_at_most_every_100_ms_per_transfer() {
        let mut p = Policy::default();
        let progress = |p: &mut Policy, transfer, now| {
            p.on_event(
                Event::TransferProgress {
                    transfer,
                    done: 10,
                    total: 100,
                },
                "ann",
                now,
                1_000_000_000_000,
            )
            .len()
        };
        assert_eq!(progress(&mut p, 1, 0.0), 1);
        assert_eq!(progress(&mut p, 1, 50.0), 0);
        assert_eq!(progress(&mut p, 2, 50.0), 1, "another transfer");
        assert_eq!(progress(&mut p, 1, 100.0), 1);
        p.forget_transfer(1);
        assert_eq!(progress(&mut p, 1, 101.0), 1, "a new start");
    }

    #[test]
    fn a_failed_transfer_drops_its_bytes_and_says_why() {
        let mut p = Policy::default();
        let out = p.on_event(
            Event::TransferFailed {
                transfer: 3,
                code: ErrorCode::TooLarge,
                text: "over quota".into(),
            },
            "ann",
            9.0,
            1_000_000_000_000,
        );
        assert_eq!(out[0], Effect::Dropped(3));
        assert!(matches!(
            &out[1],
            Effect::Show(Action::TransferEnded { id: 3, error: Some(e), now_ms }) if e.contains("over quota") && *now_ms == 9.0
        ));
    }

    #[test]
    fn an_upload_reads_its_file_as_the_core_asks() {
        let mut p = Policy::default();
        assert_eq!(
            p.on_event(
                Event::UploadWants {
                    transfer: 4,
                    offset: 1024,
                    len: 512,
                },
                "ann",
                0.0,
                1_000_000_000_000,
            ),
            vec![Effect::Read {
                transfer: 4,
                offset: 1024,
                len: 512,
            }]
        );
    }

    #[test]
    fn a_lost_session_is_forgotten() {
        let mut p = Policy::default();
        assert_eq!(
            p.on_event(Event::SessionLost, "ann", 0.0, 1_000_000_000_000),
            vec![Effect::ForgetSession]
        );
    }
}
