//! The open conversation: its messages, read like a chat (day separators,
//! runs of one sender under one name, times, links, the unread marker), and
//! the composer.

use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::state::{Delivery, Message, Peer, State};
use crate::timeline::{self, Piece, Row};

/// Properties of [`Conversation`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The app state.
    pub state: UseReducerHandle<State>,
    /// Sends a text to a conversation.
    pub on_send: Callback<(Peer, String)>,
    /// Sends a failed message again: (conversation, old number, text).
    pub on_retry: Callback<(Peer, u64, String)>,
    /// Back to the conversation list (on a phone).
    pub on_back: Callback<()>,
}

/// How far from the bottom (px) still counts as reading the newest.
const AT_BOTTOM_PX: i32 = 48;

/// Messages, newest at the bottom, and the composer.
#[function_component]
pub fn Conversation(props: &Props) -> Html {
    let state = &props.state;
    let peer = state.active.unwrap_or(Peer::Everyone);
    let draft = use_state(String::new);
    let list = use_node_ref();
    // Whether the newest message is in view; new ones scroll into view
    // only then, so reading older ones is not interrupted.
    let at_bottom = use_state(|| true);
    let count = state
        .conversations
        .get(&peer)
        .map_or(0, |c| c.messages.len());
    {
        let list = list.clone();
        use_effect_with(peer, move |_| {
            if let Some(el) = list.cast::<web_sys::Element>() {
                // Opened: at the unread marker if there is one, else the end.
                match el
                    .query_selector("[data-testid=unread-marker]")
                    .ok()
                    .flatten()
                {
                    Some(marker) => marker.scroll_into_view_with_bool(true),
                    None => el.set_scroll_top(el.scroll_height()),
                }
            }
        });
    }
    {
        let list = list.clone();
        let stick = *at_bottom;
        use_effect_with(count, move |_| {
            if stick {
                if let Some(el) = list.cast::<web_sys::Element>() {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    }
    let onscroll = {
        let at_bottom = at_bottom.clone();
        Callback::from(move |e: Event| {
            let el = e.target_unchecked_into::<web_sys::Element>();
            let bottom = el.scroll_top() + el.client_height() >= el.scroll_height() - AT_BOTTOM_PX;
            if bottom != *at_bottom {
                at_bottom.set(bottom);
            }
        })
    };
    let jump = {
        let list = list.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(el) = list.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        })
    };

    let title = match peer {
        Peer::Everyone => "Everyone".to_owned(),
        Peer::User(u) => state.name_of(u),
    };
    let messages: &[Message] = state
        .conversations
        .get(&peer)
        .map_or(&[], |c| c.messages.as_slice());
    let marker = state.marker.filter(|(p, _)| *p == peer).map(|(_, d)| d);
    let lang = language();
    let today = clock::day_of(js_sys::Date::now() as u64);
    let items = timeline::rows(messages, marker, clock::day_of)
        .into_iter()
        .map(|row| match row {
            Row::Day { day, at_ms } => {
                let label = match today - day {
                    0 => "Today".to_owned(),
                    1 => "Yesterday".to_owned(),
                    _ => clock::date(at_ms, &lang),
                };
                html! {
                    <li class="day" data-testid="day-separator" role="separator" aria-label={label.clone()}>
                        <span>{ label }</span>
                    </li>
                }
            }
            Row::Unread => html! {
                <li class="unread-marker" data-testid="unread-marker" role="separator"
                    aria-label="New messages"><span>{ "New messages" }</span></li>
            },
            Row::Message {
                index,
                first_in_group,
            } => message(props, peer, &messages[index], first_in_group, &lang),
        });

    let send = {
        let draft = draft.clone();
        let on_send = props.on_send.clone();
        move || {
            let text = draft.trim_end().to_owned();
            if !text.trim().is_empty() {
                on_send.emit((peer, text));
                draft.set(String::new());
            }
        }
    };
    let oninput = {
        let draft = draft.clone();
        Callback::from(move |e: InputEvent| {
            draft.set(e.target_unchecked_into::<HtmlTextAreaElement>().value())
        })
    };
    let onkeydown = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            // Enter sends; Shift+Enter adds a line.
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                send();
            }
        })
    };
    let onsubmit = Callback::from(move |e: SubmitEvent| {
        e.prevent_default();
        send();
    });
    let on_back = props.on_back.clone();
    let placeholder = format!("Message {title}");
    html! {
        <main class="conversation-pane" aria-labelledby="conversation-title">
            <div class="pane-title">
                <button type="button" class="back phone-only" data-testid="back" aria-label="Back to conversations"
                    onclick={move |_| on_back.emit(())}>{ "‹" }</button>
                <h2 id="conversation-title">{ title.clone() }</h2>
            </div>
            <ol class="messages" ref={list} data-testid="messages" aria-live="polite" {onscroll}>{ for items }</ol>
            if !*at_bottom {
                <button type="button" class="jump" data-testid="jump-latest" onclick={jump}>
                    { "Jump to latest ↓" }</button>
            }
            <form class="composer" {onsubmit}>
                <textarea data-testid="composer" rows="2" aria-label={placeholder.clone()} placeholder={placeholder}
                    value={(*draft).clone()} {oninput} {onkeydown} />
                <button type="submit" data-testid="send" aria-label="Send message">{ "Send" }</button>
            </form>
        </main>
    }
}

/// One message: the sender's name when it starts a run, the text with its
/// links, the time, and an own message's state while it matters.
fn message(props: &Props, peer: Peer, m: &Message, first: bool, lang: &str) -> Html {
    let sender = props.state.name_of(m.from);
    let status = m.own.as_ref().map(|(number, d)| {
        let retry = if let Delivery::Failed(reason) = d {
            let on_retry = props.on_retry.clone();
            let (number, text) = (*number, m.text.clone());
            html! {
                <>
                    <span class="why">{ reason.clone() }</span>
                    <button type="button" class="link" data-testid="retry" aria-label="Retry sending"
                        onclick={move |_| on_retry.emit((peer, number, text.clone()))}>{ "Retry" }</button>
                </>
            }
        } else {
            html! {}
        };
        let label = timeline::status_label(d);
        let aria = match d {
            Delivery::Sent => "sent",
            _ => label,
        };
        html! { <span class="status" aria-label={aria} title={aria}>{ label }{ retry }</span> }
    });
    let pieces = timeline::linkify(&m.text).into_iter().map(|p| match p {
        Piece::Text(t) => html! { { t } },
        Piece::Link(url) => html! {
            <a href={url.to_owned()} target="_blank" rel="noopener noreferrer" data-testid="link">{ url }</a>
        },
    });
    let time = (m.at_ms != 0).then(|| {
        html! {
            <time datetime={clock::iso(m.at_ms)} title={clock::full(m.at_ms, lang)} data-testid="time">
                { clock::time(m.at_ms, lang) }
            </time>
        }
    });
    let class = classes!(
        "message",
        if m.own.is_some() { "own" } else { "incoming" },
        first.then_some("first")
    );
    html! {
        <li {class} data-testid="message" data-state={m.own.as_ref().map(|(_, d)| d.as_str())}
            data-from={sender.clone()} data-first={first.to_string()}>
            if first { <span class="from">{ sender }</span> }
            <p class="text">{ for pieces }</p>
            <span class="meta">{ for time }{ for status }</span>
        </li>
    }
}

/// The browser's language, for dates and times in the user's own format.
fn language() -> String {
    web_sys::window()
        .and_then(|w| w.navigator().language())
        .unwrap_or_else(|| "en".into())
}

/// Local times, through the browser's `Date` and `Intl`.
mod clock {
    use wasm_bindgen::JsValue;

    fn date_at(at_ms: u64) -> js_sys::Date {
        js_sys::Date::new(&JsValue::from_f64(at_ms as f64))
    }

    fn options(pairs: &[(&str, &str)]) -> JsValue {
        let o = js_sys::Object::new();
        for (k, v) in pairs {
            let _ = js_sys::Reflect::set(&o, &(*k).into(), &(*v).into());
        }
        o.into()
    }

    /// The local day of a time (see `timeline::local_day`).
    pub(super) fn day_of(at_ms: u64) -> i64 {
        // getTimezoneOffset is minutes west of UTC, at that moment.
        let west = date_at(at_ms).get_timezone_offset();
        crate::timeline::local_day(at_ms, -(west as i64))
    }

    /// `14:05`, or as the user's language writes it.
    pub(super) fn time(at_ms: u64, lang: &str) -> String {
        String::from(date_at(at_ms).to_locale_time_string_with_options(
            lang,
            &options(&[("hour", "2-digit"), ("minute", "2-digit")]),
        ))
    }

    /// The whole date and time, for hovering.
    pub(super) fn full(at_ms: u64, lang: &str) -> String {
        String::from(date_at(at_ms).to_locale_string(
            lang,
            &options(&[("dateStyle", "full"), ("timeStyle", "medium")]),
        ))
    }

    /// `Monday, 30 November 2026`, for a day separator.
    pub(super) fn date(at_ms: u64, lang: &str) -> String {
        String::from(date_at(at_ms).to_locale_date_string(
            lang,
            &options(&[
                ("weekday", "long"),
                ("year", "numeric"),
                ("month", "long"),
                ("day", "numeric"),
            ]),
        ))
    }

    /// The machine-readable time, for `<time datetime>`.
    pub(super) fn iso(at_ms: u64) -> String {
        String::from(date_at(at_ms).to_iso_string())
    }
}
