//! The sign-in form.

use web_sys::HtmlInputElement;
use yew::prelude::*;

/// Properties of [`SignIn`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Whether an attempt is under way.
    pub busy: bool,
    /// Called with the name.
    pub on_sign_in: Callback<String>,
}

/// Asks for a name; shows why a name was refused, next to the field.
#[function_component]
pub fn SignIn(props: &Props) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        let on_sign_in = props.on_sign_in.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let name = el.value().trim().to_owned();
                if !name.is_empty() {
                    on_sign_in.emit(name);
                }
            }
        })
    };
    let error = props.error.clone().map(|e| {
        html! { <p id="sign-in-error" class="field-error" role="alert" data-testid="sign-in-error">{ e }</p> }
    });
    html! {
        <main class="sign-in">
            <form {onsubmit} aria-labelledby="sign-in-title">
                <h1 id="sign-in-title">{ "Join the chat" }</h1>
                <label for="name">{ "Your name" }</label>
                <input id="name" ref={input} data-testid="name-input" autocomplete="nickname"
                    maxlength="64" required=true autofocus=true
                    aria-invalid={props.error.is_some().to_string()}
                    aria-describedby="sign-in-error" />
                { for error }
                <button type="submit" data-testid="sign-in" aria-label="Sign in" disabled={props.busy}>
                    { if props.busy { "Connecting…" } else { "Sign in" } }
                </button>
            </form>
        </main>
    }
}
