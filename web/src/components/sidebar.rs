//! Conversations with unread counts, and who is online.

use yew::prelude::*;

use crate::state::{Peer, State};

/// Properties of [`Sidebar`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The app state.
    pub state: UseReducerHandle<State>,
    /// Opens a conversation.
    pub on_open: Callback<Peer>,
    /// Shows the files (on a phone, where they are a view of their own).
    pub on_files: Callback<()>,
}

/// The left column.
#[function_component]
pub fn Sidebar(props: &Props) -> Html {
    let state = &props.state;
    let me = state.me.as_ref().map(|(u, _)| *u);
    let conversations = state.conversations.iter().map(|(peer, c)| {
        let title = match peer {
            Peer::Everyone => "Everyone".to_owned(),
            Peer::User(u) => state.name_of(*u),
        };
        let active = state.active == Some(*peer);
        let onclick = {
            let on_open = props.on_open.clone();
            let peer = *peer;
            move |_| on_open.emit(peer)
        };
        let unread = (c.unread > 0).then(|| {
            html! { <span class="badge" data-testid="unread" aria-label={format!("{} unread", c.unread)}>{ c.unread }</span> }
        });
        html! {
            <li>
                <button type="button" class={classes!("conversation", active.then_some("active"))}
                    data-testid="conversation" data-title={title.clone()}
                    aria-current={active.then_some("page")} {onclick}>
                    <span class="title">{ title }</span>
                    { for unread }
                </button>
            </li>
        }
    });
    let users = state.online.iter().map(|&u| {
        let name = state.name_of(u);
        let is_me = Some(u) == me;
        let onclick = {
            let on_open = props.on_open.clone();
            move |_| on_open.emit(crate::state::Peer::User(u))
        };
        html! {
            <li>
                <button type="button" class="user" data-testid="user" data-user-name={name.clone()}
                    disabled={is_me} aria-label={if is_me { format!("{name} (you)") } else { format!("Message {name}") }}
                    {onclick}>
                    <span class="dot" aria-hidden="true"></span>
                    { name }
                    if is_me { <span class="you">{ " (you)" }</span> }
                </button>
            </li>
        }
    });
    html! {
        <aside class="sidebar">
            <nav aria-label="Conversations">
                <div class="pane-head">
                    <h2>{ "Conversations" }</h2>
                    <button type="button" class="phone-only" data-testid="show-files"
                        onclick={props.on_files.reform(|_| ())}>{ "Files" }</button>
                </div>
                <ul>{ for conversations }</ul>
            </nav>
            <section aria-label="Online users">
                <h2>{ format!("Online ({})", state.online.len()) }</h2>
                <ul data-testid="users">{ for users }</ul>
            </section>
        </aside>
    }
}
