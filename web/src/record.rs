//! What the app keeps and tells other tabs, as JSON text: a small JSON
//! value ([`Json`]) with its reader and writer, and the app's records built
//! on it field by field.
//!
//! The layout is the one the app's earlier versions wrote with serde
//! (`"Everyone"` or `{"User":2}`, `{"Failed":"why"}`, options as `null`),
//! so history kept by them still reads. serde and serde_json cost about
//! 40 KB of wasm before wasm-opt, for three record types. Numbers are
//! whole and unsigned, and exact to 64 bits (a broadcast's delivery number
//! has its top bit set, which a JavaScript number, and so the browser's
//! `JSON`, would round).
//!
//! Records come from this origin's own storage and tabs, but are read with
//! care all the same: anything malformed reads as `None`, never as a panic,
//! and nesting is bounded.

use std::collections::{BTreeMap, HashMap};

use crate::state::{Conversation, Delivery, FileEntry, Message, Peer, State, Stored, View};

/// Deeper nesting than any record has does not read.
const MAX_DEPTH: u32 = 16;

/// A JSON value, as far as the app's records need: numbers are `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null` (and a missing field, to [`Json::get`]).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number from 0 to `u64::MAX`.
    Num(u64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, its fields in order.
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    /// An object from its fields.
    pub fn obj(fields: Vec<(&str, Json)>) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A string.
    pub fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    /// Field `name` of an object; `null` when absent or not an object.
    pub fn get(&self, name: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == name)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    /// The number, if it is one.
    pub fn num(&self) -> Option<u64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if it is one.
    pub fn text(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if it is an array.
    pub fn items(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }

    /// Item `i` of an array; `null` when absent or not an array.
    pub fn at(&self, i: usize) -> &Json {
        self.items().and_then(|items| items.get(i)).unwrap_or(&NULL)
    }

    /// Whether it is `null` (or a missing field).
    pub fn is_null(&self) -> bool {
        *self == Json::Null
    }

    /// As JSON text.
    pub fn write(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => write_str(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write_to(out);
                }
                out.push('}');
            }
        }
    }

    /// JSON text as a value; `None` when it is not JSON this reads (a
    /// number that is negative, fractional or over 64 bits included).
    pub fn read(text: &str) -> Option<Json> {
        let mut r = Reader {
            bytes: text.as_bytes(),
            at: 0,
        };
        let v = r.value(0)?;
        r.space();
        (r.at == r.bytes.len()).then_some(v)
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                out.push_str("\\u00");
                for shift in [4, 0] {
                    let d = (u32::from(c) >> shift) & 0xf;
                    out.push(char::from_digit(d, 16).unwrap_or('0'));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn space(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn word(&mut self, w: &str, v: Json) -> Option<Json> {
        let end = self.at.checked_add(w.len())?;
        (self.bytes.get(self.at..end)? == w.as_bytes()).then(|| {
            self.at = end;
            v
        })
    }

    fn value(&mut self, depth: u32) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match *self.bytes.get(self.at)? {
            b'n' => self.word("null", Json::Null),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'0'..=b'9' => self.number(),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(Json::Arr(items)),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Some(Json::Obj(fields));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return None;
                    }
                    let k = self.string()?;
                    self.space();
                    if self.next()? != b':' {
                        return None;
                    }
                    fields.push((k, self.value(depth + 1)?));
                    self.space();
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(Json::Obj(fields)),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        while matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        // A fraction or an exponent is not a count or a time.
        if matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        digits.parse().ok().map(Json::Num)
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let digits = std::str::from_utf8(self.bytes.get(self.at..end)?).ok()?;
        self.at = end;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if self.next()? != b'\\' || self.next()? != b'u' {
                                    return None;
                                }
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b if b < 0x20 => return None,
                b => out.push(b),
            }
        }
    }
}

fn optional_number(n: Option<u64>) -> Json {
    n.map_or(Json::Null, Json::Num)
}

/// `null` or absent reads as `Some(None)`, a number as `Some(Some(n))`,
/// anything else as `None`.
fn read_optional_number(v: &Json) -> Option<Option<u64>> {
    if v.is_null() {
        Some(None)
    } else {
        v.num().map(Some)
    }
}

fn peer(p: Peer) -> Json {
    match p {
        Peer::Everyone => Json::str("Everyone"),
        Peer::User(u) => Json::obj(vec![("User", Json::Num(u))]),
    }
}

fn read_peer(v: &Json) -> Option<Peer> {
    if v.text() == Some("Everyone") {
        return Some(Peer::Everyone);
    }
    v.get("User").num().map(Peer::User)
}

fn delivery(d: &Delivery) -> Json {
    match d {
        Delivery::Sending => Json::str("Sending"),
        Delivery::Sent => Json::str("Sent"),
        Delivery::Failed(why) => Json::obj(vec![("Failed", Json::str(why))]),
    }
}

fn read_delivery(v: &Json) -> Option<Delivery> {
    match v.text() {
        Some("Sending") => Some(Delivery::Sending),
        Some("Sent") => Some(Delivery::Sent),
        Some(_) => None,
        None => v
            .get("Failed")
            .text()
            .map(|why| Delivery::Failed(why.to_owned())),
    }
}

fn message(m: &Message) -> Json {
    let own = m.own.as_ref().map_or(Json::Null, |(n, d)| {
        Json::Arr(vec![Json::Num(*n), delivery(d)])
    });
    Json::obj(vec![
        ("from", Json::Num(m.from)),
        ("text", Json::str(&m.text)),
        ("own", own),
        ("delivery", optional_number(m.delivery)),
        ("at_ms", Json::Num(m.at_ms)),
    ])
}

fn read_message(v: &Json) -> Option<Message> {
    let own = v.get("own");
    let own = if own.is_null() {
        None
    } else {
        Some((own.at(0).num()?, read_delivery(own.at(1))?))
    };
    let at_ms = v.get("at_ms");
    Some(Message {
        from: v.get("from").num()?,
        text: v.get("text").text()?.to_owned(),
        own,
        delivery: read_optional_number(v.get("delivery"))?,
        // History kept before messages had times has none.
        at_ms: if at_ms.is_null() { 0 } else { at_ms.num()? },
    })
}

fn conversation(c: &Conversation) -> Json {
    Json::obj(vec![
        (
            "messages",
            Json::Arr(c.messages.iter().map(message).collect()),
        ),
        ("unread", Json::Num(u64::from(c.unread))),
        ("first_unread", optional_number(c.first_unread)),
    ])
}

fn read_conversation(v: &Json) -> Option<Conversation> {
    let mut messages = Vec::new();
    for m in v.get("messages").items()? {
        messages.push(read_message(m)?);
    }
    Some(Conversation {
        messages,
        unread: u32::try_from(v.get("unread").num()?).ok()?,
        first_unread: read_optional_number(v.get("first_unread"))?,
    })
}

/// One conversation of the history as JSON text.
pub fn stored_to_json(s: &Stored) -> String {
    let names = s
        .names
        .iter()
        .map(|(u, name)| Json::Arr(vec![Json::Num(*u), Json::str(name)]))
        .collect();
    Json::obj(vec![
        ("peer", peer(s.peer)),
        ("conversation", conversation(&s.conversation)),
        ("names", Json::Arr(names)),
    ])
    .write()
}

/// One conversation of the history from JSON text; `None` when it does
/// not read (damaged, or written by a later version).
pub fn stored_from_json(json: &str) -> Option<Stored> {
    let v = Json::read(json)?;
    let mut names = Vec::new();
    let listed = v.get("names");
    if !listed.is_null() {
        for pair in listed.items()? {
            names.push((pair.at(0).num()?, pair.at(1).text()?.to_owned()));
        }
    }
    Some(Stored {
        peer: read_peer(v.get("peer"))?,
        conversation: read_conversation(v.get("conversation"))?,
        names,
    })
}

fn view_name(v: View) -> &'static str {
    match v {
        View::List => "List",
        View::Conversation => "Conversation",
        View::Files => "Files",
    }
}

fn read_view(v: &Json) -> View {
    match v.text() {
        Some("Conversation") => View::Conversation,
        Some("Files") => View::Files,
        _ => View::List,
    }
}

/// The tab's snapshot (who you are, names, the open conversation, files),
/// kept in `sessionStorage` for a reload. The connection's state is not
/// kept: a reloaded page is connecting.
pub fn state_to_json(s: &State) -> String {
    let me = s.me.as_ref().map_or(Json::Null, |(u, name)| {
        Json::Arr(vec![Json::Num(*u), Json::str(name)])
    });
    let names = s
        .names
        .iter()
        .map(|(u, name)| (u.to_string(), Json::str(name)))
        .collect();
    let files = s
        .files
        .iter()
        .map(|(id, f)| {
            let file = Json::obj(vec![
                ("name", Json::str(&f.name)),
                ("size", Json::Num(u64::from(f.size))),
            ]);
            (id.to_string(), file)
        })
        .collect();
    Json::obj(vec![
        ("me", me),
        ("protected", Json::Bool(s.protected)),
        ("names", Json::Obj(names)),
        (
            "online",
            Json::Arr(s.online.iter().map(|u| Json::Num(*u)).collect()),
        ),
        ("active", s.active.map_or(Json::Null, peer)),
        ("view", Json::str(view_name(s.view))),
        ("files", Json::Obj(files)),
        ("notice", s.notice.as_deref().map_or(Json::Null, Json::str)),
    ])
    .write()
}

/// The tab's snapshot from JSON text. What is missing or does not read is
/// left at its default (a snapshot of an older page reads as far as it goes).
pub fn state_from_json(json: &str) -> Option<State> {
    let v = Json::read(json)?;
    let mut s = State::default();
    let me = v.get("me");
    s.me = me.at(0).num().zip(me.at(1).text().map(str::to_owned));
    s.protected = *v.get("protected") == Json::Bool(true);
    if let Json::Obj(names) = v.get("names") {
        s.names = names
            .iter()
            .filter_map(|(id, name)| Some((id.parse().ok()?, name.text()?.to_owned())))
            .collect::<HashMap<u64, String>>();
    }
    if let Some(online) = v.get("online").items() {
        s.online = online.iter().filter_map(Json::num).collect();
    }
    s.active = read_peer(v.get("active"));
    s.view = read_view(v.get("view"));
    if let Json::Obj(files) = v.get("files") {
        s.files = files
            .iter()
            .filter_map(|(id, file)| {
                let size = u32::try_from(file.get("size").num()?).ok()?;
                let name = file.get("name").text()?.to_owned();
                Some((id.parse().ok()?, FileEntry { name, size }))
            })
            .collect::<BTreeMap<u64, FileEntry>>();
    }
    s.notice = v.get("notice").text().map(str::to_owned);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Action, Link};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn signed_in() -> State {
        let mut s = State::default();
        s.apply(Action::SignedIn {
            user: 1,
            name: "me".into(),
            protected: Some(true),
        });
        s.apply(Action::Name(2, "ann".into()));
        s.apply(Action::File(
            7,
            FileEntry {
                name: "a.txt".into(),
                size: 3,
            },
        ));
        s.apply(Action::Open(Peer::User(2)));
        s
    }

    #[test]
    fn the_tab_keeps_who_you_are_and_the_history_keeps_the_messages() {
        let mut s = signed_in();
        s.apply(Action::Incoming {
            from: 2,
            delivery: 5,
            broadcast: false,
            text: "hi\nthere \"you\"".into(),
            at_ms: 1_700_000_000_000,
        });
        s.apply(Action::Sending {
            peer: Peer::User(2),
            number: 9,
            text: "back".into(),
            at_ms: 1_700_000_000_001,
        });
        s.apply(Action::Failed {
            number: 9,
            reason: "full".into(),
        });
        let back = state_from_json(&state_to_json(&s)).unwrap();
        assert_eq!(back.me, s.me);
        assert!(back.protected);
        assert_eq!(back.names, s.names);
        assert_eq!(back.active, s.active);
        assert_eq!(back.view, s.view);
        assert_eq!(back.files, s.files);
        assert_eq!(back.link, Link::Offline, "the connection is not kept");
        assert!(back.conversations.is_empty());
        let kept = s.stored(Peer::User(2)).unwrap();
        assert_eq!(stored_from_json(&stored_to_json(&kept)).unwrap(), kept);
    }

    #[test]
    fn history_written_by_serde_still_reads() {
        // As the app's serde_json wrote it before this module.
        let json = r#"{"peer":{"User":2},"conversation":{"messages":[
            {"from":2,"text":"one","own":null,"delivery":4,"at_ms":5},
            {"from":1,"text":"two","own":[9,{"Failed":"no"}],"delivery":null},
            {"from":1,"text":"three","own":[10,"Sent"],"delivery":null,"at_ms":6}],
            "unread":1,"first_unread":4},"names":[[2,"ann"]]}"#;
        let s = stored_from_json(json).unwrap();
        assert_eq!(s.peer, Peer::User(2));
        assert_eq!(s.names, vec![(2, "ann".to_owned())]);
        let m = &s.conversation.messages;
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].own, Some((9, Delivery::Failed("no".into()))));
        assert_eq!(m[1].at_ms, 0, "older history has no times");
        assert_eq!(m[2].own, Some((10, Delivery::Sent)));
        assert_eq!(s.conversation.first_unread, Some(4));
        let snapshot = r#"{"link":"Online","me":[1,"me"],"names":{"2":"ann"},
            "online":[2],"active":"Everyone","files":{},"notice":null}"#;
        let s = state_from_json(snapshot).unwrap();
        assert_eq!(s.me, Some((1, "me".into())));
        assert!(!s.protected, "older pages did not say");
        assert_eq!(s.active, Some(Peer::Everyone));
    }

    #[test]
    fn records_that_do_not_read_are_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"peer":"Nobody","conversation":{"messages":[],"unread":0}}"#,
            r#"{"peer":{"User":-1},"conversation":{"messages":[],"unread":0}}"#,
            r#"{"peer":{"User":18446744073709551616},"conversation":{"messages":[],"unread":0}}"#,
            r#"{"peer":"Everyone","conversation":{"messages":[],"unread":0}} x"#,
            r#"{"peer":"Everyone","conversation":{"messages":[],"unread":0}"#,
            r#"{"peer":"Everyone","conversation":{"messages":[{"from":1}],"unread":0}}"#,
            r#"{"peer":"Everyone","conversation":{"messages":[],"unread":1.5}}"#,
        ] {
            assert_eq!(stored_from_json(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_are_exact_to_64_bits_and_text_reads_back_whole() {
        let broadcast = proto::limits::BROADCAST_BIT | 7;
        let text = "line\nnext \"quoted\" back\\slash \u{1}\u{1f} tab\t é 😀";
        let v = Json::Arr(vec![
            Json::Num(broadcast),
            Json::Num(u64::MAX),
            Json::str(text),
        ]);
        assert_eq!(Json::read(&v.write()), Some(v));
        assert_eq!(
            Json::read(r#" [ "\ud83d\ude00\u00e9\/\b\f\r" , true,false ,null,{} ] "#),
            Some(Json::Arr(vec![
                Json::str("😀é/\u{8}\u{c}\r"),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Obj(vec![]),
            ]))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "\"\\ud83d\"",
            "\"\\x\"",
            "\"\n\"",
            "[1,]",
            "{\"a\" 1}",
            "{1:2}",
            "nul",
            "[",
            "\"open",
        ] {
            assert_eq!(Json::read(bad), None, "{bad}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(Json::read(&deep), None, "nesting is bounded");
    }
}

/// The reader meets anything: whatever it reads, it writes back the same,
/// and no input makes it panic (the records come from storage another
/// version of the app, or a damaged disk, may have written).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<u64>().prop_map(Json::Num),
            any::<String>().prop_map(Json::Str),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Arr),
                prop::collection::vec((any::<String>(), inner), 0..8).prop_map(Json::Obj),
            ]
        })
    }

    /// Text made of JSON's own pieces, so that most of it nearly parses.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("\\u".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just(" ".to_owned()),
            "[0-9a-fA-F]{1,20}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(v in json()) {
            prop_assert_eq!(Json::read(&v.write()), Some(v));
        }

        #[test]
        fn any_text_reads_without_panic_and_what_reads_writes_back(text in jsonish()) {
            if let Some(v) = Json::read(&text) {
                prop_assert_eq!(Json::read(&v.write()), Some(v));
            }
            let _ = stored_from_json(&text);
            let _ = state_from_json(&text);
        }
    }
}
