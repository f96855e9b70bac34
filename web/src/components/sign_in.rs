//! The sign-in form.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::field_message;
use crate::state::{password_to_send, SignInError, SignInField};

/// What the form asks to sign in with. The password goes to the protocol
/// core's memory and nowhere else.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    /// The name, trimmed.
    pub name: String,
    /// The password, as typed; `None` to sign in without one.
    pub password: Option<String>,
}

/// Properties of [`SignIn`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// Why the last attempt failed.
    pub error: Option<SignInError>,
    /// Whether an attempt is under way.
    pub busy: bool,
    /// Called with the name and password.
    pub on_sign_in: Callback<Credentials>,
    /// Names signed in in other tabs of this browser, with their sessions.
    pub other_tabs: std::collections::BTreeMap<String, u64>,
    /// Takes one of those sessions over: (name, session).
    pub on_use_here: Callback<(String, u64)>,
}

/// Asks for a name and, optionally, its password; shows why an attempt was
/// refused next to the field it concerns.
#[function_component]
pub fn SignIn(props: &Props) -> Html {
    let name_ref = use_node_ref();
    let password_ref = use_node_ref();
    let protect_ref = use_node_ref();
    // Why the typed password is not sent (checked here, before sending).
    let local = use_state(|| None::<String>);
    // Whether "protect" is ticked, for the words under the password field.
    let protect = use_state(|| false);

    // A refusal puts the name back (the form may be new after a reload)
    // and focuses the field to correct.
    {
        let name_ref = name_ref.clone();
        let password_ref = password_ref.clone();
        use_effect_with(props.error.clone(), move |error| {
            if let Some(e) = error {
                if let Some(name) = name_ref.cast::<HtmlInputElement>() {
                    if name.value().is_empty() {
                        name.set_value(&e.name);
                    }
                    if e.field == SignInField::Name {
                        let _ = name.focus();
                    }
                }
                if e.field != SignInField::Name {
                    if let Some(password) = password_ref.cast::<HtmlInputElement>() {
                        let _ = password.focus();
                        password.select();
                    }
                }
            }
        });
    }

    let onsubmit = {
        let name_ref = name_ref.clone();
        let password_ref = password_ref.clone();
        let protect_ref = protect_ref.clone();
        let local = local.clone();
        let on_sign_in = props.on_sign_in.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let (Some(name), Some(password)) = (
                name_ref.cast::<HtmlInputElement>(),
                password_ref.cast::<HtmlInputElement>(),
            ) else {
                return;
            };
            let protect = protect_ref
                .cast::<HtmlInputElement>()
                .is_some_and(|c| c.checked());
            let name = name.value().trim().to_owned();
            if name.is_empty() {
                return;
            }
            let typed = password.value();
            match password_to_send(&typed, protect) {
                Ok(password) => {
                    local.set(None);
                    on_sign_in.emit(Credentials {
                        name,
                        password: password.map(str::to_owned),
                    });
                }
                Err(why) => {
                    local.set(Some(why));
                    let _ = password.focus();
                }
            }
        })
    };
    let onchange = {
        let protect = protect.clone();
        Callback::from(move |e: Event| {
            if let Some(c) = e.target_dyn_into::<HtmlInputElement>() {
                protect.set(c.checked());
            }
        })
    };

    let server = props.error.as_ref();
    let name_error = server
        .filter(|e| e.field != SignInField::Password)
        .map(|e| e.text.clone());
    let password_error = (*local).clone().or_else(|| {
        server
            .filter(|e| e.field == SignInField::Password)
            .map(|e| e.text.clone())
    });
    // The name needs its password: say so in the label.
    let protected = server.is_some_and(|e| e.field != SignInField::Name);
    let hint = if *protect {
        "You will need this password to use this name again."
    } else {
        "Only if your name has one. A name without a password gets this one."
    };
    let other_tabs = props.other_tabs.iter().map(|(name, &session)| {
        let on_use_here = props.on_use_here.clone();
        let taken = name.clone();
        html! {
            <p class="other-tab" data-testid="other-tab" data-name={name.clone()}>
                <span>{ format!("{name} is open in another tab of this browser.") }</span>
                <button type="button" data-testid="use-here"
                    aria-label={format!("Use {name} here instead")}
                    onclick={move |_| on_use_here.emit((taken.clone(), session))}>{ "Use here" }</button>
            </p>
        }
    });
    html! {
        <main class="sign-in">
            <form {onsubmit} aria-labelledby="sign-in-title">
                <h1 id="sign-in-title">{ "Join the chat" }</h1>
                { for other_tabs }
                <label for="name">{ "Your name" }</label>
                <input id="name" ref={name_ref} data-testid="name-input" autocomplete="username"
                    maxlength="64" required=true autofocus=true
                    aria-invalid={name_error.is_some().to_string()}
                    aria-describedby="sign-in-error" />
                { field_message("sign-in-error", "field-error", name_error.clone()) }
                <label for="password">
                    { if protected || *protect { "Password" } else { "Password (optional)" } }
                </label>
                <input id="password" ref={password_ref} type="password" data-testid="password-input"
                    autocomplete={if *protect { "new-password" } else { "current-password" }}
                    aria-required={(protected || *protect).to_string()}
                    aria-invalid={password_error.is_some().to_string()}
                    aria-describedby="password-error password-hint" />
                { field_message("password-error", "field-error", password_error.clone()) }
                <p id="password-hint" class="hint">{ hint }</p>
                <label class="check">
                    <input type="checkbox" ref={protect_ref} data-testid="protect" {onchange} />
                    { "Protect this name with this password" }
                </label>
                <button type="submit" data-testid="sign-in" aria-label="Sign in" disabled={props.busy}>
                    { if props.busy { "Connecting…" } else { "Sign in" } }
                </button>
            </form>
        </main>
    }
}
