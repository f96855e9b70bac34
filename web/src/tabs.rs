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

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};
use yew::Callback;

use crate::record::Json;

const CHANNEL: &str = "chat-tabs";

/// What tabs tell each other: `kind` is `who` (who is signed in?), `here`
/// (a tab is signed in as `name` with `session`), `gone` (a tab signed out
/// as `name`) or `took` (a tab takes `name`'s session). Every note names
/// the server (the WebSocket URL), so tabs of two chats under one origin
/// do not mix. Sent as JSON text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Note {
    /// What the note says.
    pub kind: String,
    /// The server.
    pub server: String,
    /// The name, but for `who`.
    pub name: String,
    /// The session, for `here`.
    pub session: u64,
}

impl Note {
    fn new(kind: &str, server: &str, name: &str, session: u64) -> Self {
        Note {
            kind: kind.to_owned(),
            server: server.to_owned(),
            name: name.to_owned(),
            session,
        }
    }

    /// The note as JSON text.
    fn to_json(&self) -> String {
        Json::obj(vec![
            ("kind", Json::str(&self.kind)),
            ("server", Json::str(&self.server)),
            ("name", Json::str(&self.name)),
            ("session", Json::Num(self.session)),
        ])
        .write()
    }

    /// A note from JSON text; `None` unless it has a kind and a server
    /// and its other fields, where present, read.
    fn from_json(json: &str) -> Option<Note> {
        let v = Json::read(json)?;
        let name = v.get("name");
        let session = v.get("session");
        Some(Note {
            kind: v.get("kind").text()?.to_owned(),
            server: v.get("server").text()?.to_owned(),
            name: if name.is_null() { "" } else { name.text()? }.to_owned(),
            session: if session.is_null() { 0 } else { session.num()? },
        })
    }
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
            let Some(note) = e.data().as_string().and_then(|json| Note::from_json(&json)) else {
                return;
            };
            if note.server != ours {
                return;
            }
            match note.kind.as_str() {
                "who" => {
                    if let Some((name, session)) = mine() {
                        post(&reply, &Note::new("here", &ours, &name, session));
                    }
                }
                "here" => heard.emit(Heard::Here(note.name, note.session)),
                "gone" => heard.emit(Heard::Gone(note.name)),
                "took" => heard.emit(Heard::Took(note.name)),
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
        post(&self.channel, &Note::new("who", &self.server, "", 0));
    }

    /// Tells the other tabs this one is signed in.
    pub fn here(&self, name: &str, session: u64) {
        post(
            &self.channel,
            &Note::new("here", &self.server, name, session),
        );
    }

    /// Tells the other tabs this one is no longer signed in as `name`.
    pub fn gone(&self, name: &str) {
        post(&self.channel, &Note::new("gone", &self.server, name, 0));
    }

    /// Tells the tab signed in as `name` that this one takes its session.
    pub fn took(&self, name: &str) {
        post(&self.channel, &Note::new("took", &self.server, name, 0));
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

fn post(channel: &BroadcastChannel, note: &Note) {
    let _ = channel.post_message(&JsValue::from_str(&note.to_json()));
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn notes_read_back_as_written_and_strangers_words_do_not_read() {
        let note = Note::new("here", "ws://h/ws", "ann", u64::MAX);
        assert_eq!(Note::from_json(&note.to_json()), Some(note));
        let who = Note::from_json(r#"{"kind":"who","server":"x"}"#).unwrap();
        assert_eq!((who.name.as_str(), who.session), ("", 0));
        for bad in [
            r#"{"kind":"here"}"#,
            r#"{"kind":"here","server":"x","session":-1}"#,
            r#"{"kind":"here","server":"x","session":"1"}"#,
            r#"{"kind":"here","server":"x","name":3}"#,
            "not json",
            "null",
        ] {
            assert_eq!(Note::from_json(bad), None, "{bad}");
        }
    }
}
