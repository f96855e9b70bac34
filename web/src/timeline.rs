//! How a conversation reads: day separators, messages grouped by sender,
//! where own messages show their state, and links in the text. Pure, so
//! every rule is unit-tested; the component renders what this decides.

use crate::state::{Delivery, Message};

/// Consecutive messages of one sender closer than this share one name.
pub const GROUP_GAP_MS: u64 = 5 * 60 * 1000;

/// One line of the rendered conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A new local day starts: the day number (see [`local_day`]) and a
    /// time in it, for the label.
    Day {
        /// The local day.
        day: i64,
        /// A time on that day (ms since the Unix epoch), for the label.
        at_ms: u64,
    },
    /// The "new messages" marker.
    Unread,
    /// A message: its index in the conversation, and whether it starts a
    /// group (its sender's name is shown).
    Message {
        /// Index in the conversation's messages.
        index: usize,
        /// Whether the sender's name is shown above it.
        first_in_group: bool,
    },
}

/// The local day of `at_ms` (ms since the Unix epoch), given this time
/// zone's offset from UTC at that moment in minutes east (UTC+2: 120).
pub fn local_day(at_ms: u64, offset_minutes: i64) -> i64 {
    (at_ms as i64 + offset_minutes * 60_000).div_euclid(86_400_000)
}

/// The rows of `messages`: a day separator before the first message of
/// each local day (`day_of` maps a time to its local day), the unread
/// marker before the message whose delivery number is `marker`, and names
/// only where a sender's run starts (another sender, another day, a marker
/// or a pause of [`GROUP_GAP_MS`] in between). Messages of unknown time
/// (0, kept by an older version) get no separator of their own.
pub fn rows(messages: &[Message], marker: Option<u64>, day_of: impl Fn(u64) -> i64) -> Vec<Row> {
    let mut out = Vec::with_capacity(messages.len() + 4);
    let mut last_day = None;
    let mut previous: Option<&Message> = None;
    for (index, m) in messages.iter().enumerate() {
        let mut breaks = false;
        if m.at_ms != 0 {
            let day = day_of(m.at_ms);
            if last_day != Some(day) {
                out.push(Row::Day {
                    day,
                    at_ms: m.at_ms,
                });
                last_day = Some(day);
                breaks = true;
            }
        }
        if marker.is_some() && m.delivery == marker && m.own.is_none() {
            out.push(Row::Unread);
            breaks = true;
        }
        let first_in_group = breaks
            || previous.is_none_or(|p| {
                p.from != m.from
                    || p.own.is_some() != m.own.is_some()
                    || m.at_ms.saturating_sub(p.at_ms) > GROUP_GAP_MS
            });
        out.push(Row::Message {
            index,
            first_in_group,
        });
        previous = Some(m);
    }
    out
}

/// What an own message shows of its state: words while it matters
/// (sending, failed), then only a quiet tick.
pub fn status_label(delivery: &Delivery) -> &'static str {
    match delivery {
        Delivery::Sending => "sending…",
        Delivery::Sent => "✓",
        Delivery::Failed(_) => "not sent",
    }
}

/// A piece of a message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Shown as it is (newlines kept by the style).
    Text(&'a str),
    /// An `http:` or `https:` URL, shown as a link to itself.
    Link(&'a str),
}

/// Splits `text` into text and links. Only `http://` and `https://` URLs
/// become links (never `javascript:`, `data:` or anything else); a URL ends
/// at whitespace, and punctuation that ends a sentence (or a closing
/// bracket whose opening one is not in the URL) is left out of it.
pub fn linkify(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    // Where the text not yet in `out` starts, and where to look next.
    let (mut text_from, mut search) = (0, 0);
    while let Some(i) = find_url_start(&text[search..]) {
        let start = search + i;
        let tail = &text[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(tail.len());
        let url = trim_url(&tail[..end]);
        let https = url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if url.len() <= if https { 8 } else { 7 } {
            // A bare scheme is no link: look further ("http" is ASCII).
            search = start + 4;
            continue;
        }
        if start > text_from {
            out.push(Piece::Text(&text[text_from..start]));
        }
        out.push(Piece::Link(url));
        text_from = start + url.len();
        search = text_from;
    }
    if text_from < text.len() {
        out.push(Piece::Text(&text[text_from..]));
    }
    out
}

/// Where the next `http://` or `https://` starts (any case), at the start
/// of the text or after a character that is not part of a word.
fn find_url_start(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("http") {
        let at = from + i;
        let after = &lower[at..];
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary && (after.starts_with("http://") || after.starts_with("https://")) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

fn trim_url(url: &str) -> &str {
    let mut url = url;
    loop {
        let Some(last) = url.chars().next_back() else {
            return url;
        };
        let unbalanced = |open: char, close: char| {
            last == close && url.matches(open).count() < url.matches(close).count()
        };
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*')
            || unbalanced('(', ')')
            || unbalanced('[', ']')
            || unbalanced('{', '}')
        {
            url = &url[..url.len() - last.len_utf8()];
        } else {
            return url;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DAY: u64 = 86_400_000;
    const NOON: u64 = 20_000 * DAY + DAY / 2;

    fn message(from: u64, at_ms: u64, delivery: u64) -> Message {
        Message {
            from,
            text: String::new(),
            own: None,
            delivery: Some(delivery),
            at_ms,
        }
    }

    fn utc(at: u64) -> i64 {
        local_day(at, 0)
    }

    fn firsts(rows: &[Row]) -> Vec<bool> {
        rows.iter()
            .filter_map(|r| match r {
                Row::Message { first_in_group, .. } => Some(*first_in_group),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn local_days_follow_the_time_zone() {
        assert_eq!(local_day(NOON, 0), 20_000);
        // 23:30 UTC is already tomorrow two hours east, still today west.
        let late = 20_000 * DAY + DAY - 30 * 60_000;
        assert_eq!(local_day(late, 120), 20_001);
        assert_eq!(local_day(late, -300), 20_000);
        assert_eq!(local_day(10 * 60_000, -60), -1, "before the epoch, locally");
    }

    #[test]
    fn a_day_separator_starts_each_day() {
        let ms = [
            message(2, NOON, 1),
            message(2, NOON + 60_000, 2),
            message(2, NOON + DAY, 3),
        ];
        let rows = rows(&ms, None, utc);
        assert_eq!(
            rows,
            vec![
                Row::Day {
                    day: 20_000,
                    at_ms: NOON
                },
                Row::Message {
                    index: 0,
                    first_in_group: true
                },
                Row::Message {
                    index: 1,
                    first_in_group: false
                },
                Row::Day {
                    day: 20_001,
                    at_ms: NOON + DAY
                },
                Row::Message {
                    index: 2,
                    first_in_group: true
                },
            ]
        );
    }

    #[test]
    fn a_run_of_one_sender_shows_the_name_once() {
        let mut own = message(1, NOON + 3 * 60_000, 0);
        own.own = Some((9, Delivery::Sent));
        own.delivery = None;
        let ms = [
            message(2, NOON, 1),
            message(2, NOON + 60_000, 2),
            message(3, NOON + 2 * 60_000, 3),
            own,
            message(3, NOON + 4 * 60_000, 4),
            // A long pause starts a new group, even from the same sender.
            message(3, NOON + 4 * 60_000 + GROUP_GAP_MS + 1, 5),
        ];
        assert_eq!(
            firsts(&rows(&ms, None, utc)),
            vec![true, false, true, true, true, true]
        );
    }

    #[test]
    fn the_unread_marker_goes_before_the_first_unread_message_and_starts_a_group() {
        let ms = [message(2, NOON, 1), message(2, NOON + 1, 2)];
        let rows = rows(&ms, Some(2), utc);
        assert_eq!(rows[2], Row::Unread);
        assert_eq!(firsts(&rows), vec![true, true]);
    }

    #[test]
    fn messages_of_unknown_time_get_no_separator() {
        let ms = [message(2, 0, 1), message(2, 0, 2)];
        assert_eq!(
            rows(&ms, None, utc),
            vec![
                Row::Message {
                    index: 0,
                    first_in_group: true
                },
                Row::Message {
                    index: 1,
                    first_in_group: false
                },
            ]
        );
    }

    #[test]
    fn own_messages_say_their_state_only_while_it_matters() {
        assert_eq!(status_label(&Delivery::Sending), "sending…");
        assert_eq!(status_label(&Delivery::Failed("x".into())), "not sent");
        assert_eq!(status_label(&Delivery::Sent), "✓");
    }

    #[test]
    fn http_and_https_urls_become_links_and_nothing_else_does() {
        use Piece::*;
        assert_eq!(
            linkify("see https://example.org/a?b=1#c, then"),
            vec![
                Text("see "),
                Link("https://example.org/a?b=1#c"),
                Text(", then")
            ]
        );
        assert_eq!(linkify("HTTP://X.ORG"), vec![Link("HTTP://X.ORG")]);
        assert_eq!(
            linkify("(http://en.wikipedia.org/wiki/Rust_(language)) ok."),
            vec![
                Text("("),
                Link("http://en.wikipedia.org/wiki/Rust_(language)"),
                Text(") ok."),
            ]
        );
        assert_eq!(
            linkify("javascript:alert(1) data:text/html,x file:///etc/passwd"),
            vec![Text(
                "javascript:alert(1) data:text/html,x file:///etc/passwd"
            )]
        );
        assert_eq!(
            linkify("javascript:alert('http://x.org')"),
            vec![Text("javascript:alert('"), Link("http://x.org"), Text("')")],
            "only the http URL inside is a link"
        );
        assert_eq!(
            linkify("nothttp://x.org"),
            vec![Text("nothttp://x.org")],
            "inside a word"
        );
        assert_eq!(
            linkify("just http:// and https://."),
            vec![Text("just http:// and https://.")]
        );
        assert_eq!(
            linkify("two\nhttp://a.b\nhttp://c.d"),
            vec![
                Text("two\n"),
                Link("http://a.b"),
                Text("\n"),
                Link("http://c.d")
            ]
        );
        assert_eq!(linkify(""), Vec::<Piece<'_>>::new());
        assert_eq!(linkify("héllo wörld"), vec![Text("héllo wörld")]);
        assert_eq!(
            linkify("http://é.fr/ü and httpé"),
            vec![Link("http://é.fr/ü"), Text(" and httpé")],
            "no slicing inside a character"
        );
    }
}
