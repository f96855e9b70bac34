//! Other tabs of this browser with the app open, over a `BroadcastChannel`
//! (same origin only, so only this app's own tabs hear it). A tab signed in
//! says so; a tab showing the sign-in form asks who is signed in, and can
//! take one of their sessions over with the protocol's own resume (SESSION
//! PRESERVE), after telling the other tab, so it can say where its session
//! went.
//!
//! The session number crosses between tabs of one browser profile and
//! origin, which share storage anyway; it never leaves the browser.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};
use yew::Callback;

const CHANNEL: &str = "chat-tabs";

/// What tabs tell each other. Every note names the server (the WebSocket
/// URL), so tabs of two chats under one origin do not mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// Who is signed in? (From a tab that is not.)
    Who {
        /// The server asked about.
        server: String,
    },
    /// A tab is signed in as `name` with this session.
    Here {
        /// The server.
        server: String,
        /// The name.
        name: String,
        /// The session, to take over.
        session: u64,
    },
    /// A tab signed out (or closed) as `name`.
    Gone {
        /// The server.
        server: String,
        /// The name.
        name: String,
    },
    /// A tab is taking `name`'s session over.
    Took {
        /// The server.
        server: String,
        /// The name.
        name: String,
    },
}

/// What the app hears from other tabs of the same server.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// Another tab is signed in as this name, with this session.
    Here(String, u64),
    /// Another tab is no longer signed in as this name.
    Gone(String),
    /// Another tab took this name's session.
    Took(String),
}

/// This tab's end of the channel.
pub struct Tabs {
    channel: BroadcastChannel,
    server: String,
    _listener: Closure<dyn FnMut(MessageEvent)>,
}

impl Tabs {
    /// Joins the channel for `server`; `mine` says what this tab is signed
    /// in as (to answer [`Note::Who`]), `heard` hears the rest. `None` where
    /// the browser has no `BroadcastChannel`: the app works, without this.
    pub fn open(
        server: String,
        mine: Rc<dyn Fn() -> Option<(String, u64)>>,
        heard: Callback<Heard>,
    ) -> Option<Rc<Tabs>> {
        let channel = BroadcastChannel::new(CHANNEL).ok()?;
        let reply = channel.clone();
        let ours = server.clone();
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            // Another tab's words, so read with care: anything else is ignored.
            let Some(note) = e
                .data()
                .as_string()
                .and_then(|json| serde_json::from_str::<Note>(&json).ok())
            else {
                return;
            };
            match note {
                Note::Who { server } if server == ours => {
                    if let Some((name, session)) = mine() {
                        post(
                            &reply,
                            &Note::Here {
                                server,
                                name,
                                session,
                            },
                        );
                    }
                }
                Note::Here {
                    server,
                    name,
                    session,
                } if server == ours => heard.emit(Heard::Here(name, session)),
                Note::Gone { server, name } if server == ours => heard.emit(Heard::Gone(name)),
                Note::Took { server, name } if server == ours => heard.emit(Heard::Took(name)),
                _ => {}
            }
        });
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        Some(Rc::new(Tabs {
            channel,
            server,
            _listener: listener,
        }))
    }

    /// Asks the other tabs who is signed in.
    pub fn ask(&self) {
        post(
            &self.channel,
            &Note::Who {
                server: self.server.clone(),
            },
        );
    }

    /// Tells the other tabs this one is signed in.
    pub fn here(&self, name: &str, session: u64) {
        post(
            &self.channel,
            &Note::Here {
                server: self.server.clone(),
                name: name.to_owned(),
                session,
            },
        );
    }

    /// Tells the other tabs this one is no longer signed in as `name`.
    pub fn gone(&self, name: &str) {
        post(
            &self.channel,
            &Note::Gone {
                server: self.server.clone(),
                name: name.to_owned(),
            },
        );
    }

    /// Tells the tab signed in as `name` that this one takes its session.
    pub fn took(&self, name: &str) {
        post(
            &self.channel,
            &Note::Took {
                server: self.server.clone(),
                name: name.to_owned(),
            },
        );
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

fn post(channel: &BroadcastChannel, note: &Note) {
    if let Ok(json) = serde_json::to_string(note) {
        let _ = channel.post_message(&JsValue::from_str(&json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn notes_read_back_as_written_and_strangers_words_do_not_read() {
        let note = Note::Here {
            server: "ws://h/ws".into(),
            name: "ann".into(),
            session: u64::MAX,
        };
        let json = serde_json::to_string(&note).unwrap();
        assert_eq!(serde_json::from_str::<Note>(&json).unwrap(), note);
        assert!(serde_json::from_str::<Note>(r#"{"kind":"here","server":"x"}"#).is_err());
        assert!(serde_json::from_str::<Note>("not json").is_err());
    }
}
