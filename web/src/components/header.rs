//! The top bar: who you are and the state of the connection.

use yew::prelude::*;

use crate::state::{Link, State};

/// Properties of [`Header`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The app state.
    pub state: UseReducerHandle<State>,
    /// Signs out, keeping (`true`) or clearing the history on this device.
    pub on_sign_out: Callback<bool>,
    /// Opens the change-password form.
    pub on_password: Callback<()>,
    /// Turns desktop notifications on or off.
    pub on_notifications: Callback<()>,
    /// Connects again after the connection was given up (for example when
    /// another tab took the session over).
    pub on_reconnect: Callback<()>,
}

/// The header with the always-visible connection state.
#[function_component]
pub fn Header(props: &Props) -> Html {
    let (class, text) = match &props.state.link {
        Link::Offline => ("offline", "Offline".to_owned()),
        Link::Connecting => ("connecting", "Connecting…".to_owned()),
        Link::Online => ("online", "Connected".to_owned()),
        Link::Reconnecting {
            retry_in_ms,
            reason,
        } => (
            "reconnecting",
            format!(
                "Reconnecting in {} s ({reason})",
                (retry_in_ms.saturating_add(500)) / 1000
            ),
        ),
    };
    let offline = props.state.link == Link::Offline;
    let moved = props.state.moved_to_tab;
    // Signing out first asks what becomes of the history on this device.
    let asking = use_state(|| false);
    let me = props.state.me.as_ref().map(|(_, name)| {
        let ask = {
            let asking = asking.clone();
            move |_| asking.set(!*asking)
        };
        let sign_out = |keep: bool| {
            let on_sign_out = props.on_sign_out.clone();
            let asking = asking.clone();
            move |_| {
                asking.set(false);
                on_sign_out.emit(keep);
            }
        };
        let on_reconnect = props.on_reconnect.clone();
        let on_password = props.on_password.clone();
        let on_notifications = props.on_notifications.clone();
        let notifying = props.state.notifications;
        let password_label = if props.state.protected { "Password" } else { "Set a password" };
        html! {
            <span class="me">
                if offline {
                    <button type="button" class="link" data-testid="reconnect" aria-label={if moved { "Use here" } else { "Reconnect" }}
                        onclick={move |_| on_reconnect.emit(())}>
                        { if moved { "Use here" } else { "Reconnect" } }</button>
                }
                <span data-testid="me">{ name.clone() }</span>
                if crate::notify::supported() {
                    <button type="button" class="link" data-testid="notifications"
                        aria-pressed={notifying.to_string()}
                        title="Desktop notifications for messages that arrive while this tab is hidden"
                        onclick={move |_| on_notifications.emit(())}>
                        { if notifying { "Notifications on" } else { "Notify me" } }
                    </button>
                }
                <button type="button" class="link" data-testid="password-open"
                    aria-expanded={props.state.password_form.is_open().to_string()}
                    onclick={move |_| on_password.emit(())}>{ password_label }</button>
                <button type="button" class="link" data-testid="sign-out" aria-label="Sign out"
                    aria-expanded={asking.to_string()} onclick={ask}>{ "Sign out" }</button>
                if *asking {
                    <div class="sign-out-ask" role="group" aria-label="Sign out" data-testid="sign-out-ask">
                        <span>{ "Keep your conversations on this device?" }</span>
                        <button type="button" data-testid="sign-out-keep" onclick={sign_out(true)}>
                            { "Keep and sign out" }</button>
                        <button type="button" data-testid="sign-out-clear" onclick={sign_out(false)}>
                            { "Clear and sign out" }</button>
                    </div>
                }
            </span>
        }
    });
    html! {
        <header class="top">
            <span class="brand">{ "Chat" }</span>
            <span class={classes!("link-state", class)} data-testid="connection-state" data-state={class}
                role="status" aria-live="polite">{ text }</span>
            { for me }
        </header>
    }
}
