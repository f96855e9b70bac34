//! The open conversation: its messages and the composer.

use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::state::{Delivery, Peer, State};

/// Properties of [`Conversation`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The app state.
    pub state: UseReducerHandle<State>,
    /// Sends a text to a conversation.
    pub on_send: Callback<(Peer, String)>,
    /// Sends a failed message again: (conversation, old number, text).
    pub on_retry: Callback<(Peer, u64, String)>,
}

/// Messages, newest at the bottom, and the composer.
#[function_component]
pub fn Conversation(props: &Props) -> Html {
    let state = &props.state;
    let peer = state.active.unwrap_or(Peer::Everyone);
    let draft = use_state(String::new);
    let list = use_node_ref();
    {
        // Keep the newest message in view.
        let list = list.clone();
        let count = state
            .conversations
            .get(&peer)
            .map_or(0, |c| c.messages.len());
        use_effect_with((peer, count), move |_| {
            if let Some(el) = list.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }
    let title = match peer {
        Peer::Everyone => "Everyone".to_owned(),
        Peer::User(u) => state.name_of(u),
    };
    let messages = state
        .conversations
        .get(&peer)
        .map(|c| c.messages.clone())
        .unwrap_or_default();
    let items = messages.into_iter().map(|m| {
        let sender = state.name_of(m.from);
        let (class, status) = match &m.own {
            None => ("incoming", html! {}),
            Some((number, d)) => {
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
                let label = match d {
                    Delivery::Sending => "sending…",
                    Delivery::Sent => "✓ sent",
                    Delivery::Failed(_) => "failed",
                };
                ("own", html! { <span class="status" aria-label={label}>{ label }{ retry }</span> })
            }
        };
        let state_attr = m.own.as_ref().map(|(_, d)| d.as_str());
        html! {
            <li class={classes!("message", class)} data-testid="message" data-state={state_attr}
                data-from={sender.clone()}>
                <span class="from">{ sender }</span>
                <p class="text">{ m.text.clone() }</p>
                { status }
            </li>
        }
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
    let placeholder = format!("Message {title}");
    html! {
        <main class="conversation-pane" aria-labelledby="conversation-title">
            <h2 id="conversation-title">{ title.clone() }</h2>
            <ol class="messages" ref={list} data-testid="messages" aria-live="polite">{ for items }</ol>
            <form class="composer" {onsubmit}>
                <textarea data-testid="composer" rows="2" aria-label={placeholder.clone()} placeholder={placeholder}
                    value={(*draft).clone()} {oninput} {onkeydown} />
                <button type="submit" data-testid="send" aria-label="Send message">{ "Send" }</button>
            </form>
        </main>
    }
}
