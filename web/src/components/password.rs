//! The change-password form: set a password for an unprotected name, or
//! change the one it has.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::field_message;
use crate::state::{new_password_problem, PasswordForm as Status};

/// A change the form asks for. The passwords go to the protocol core and
/// nowhere else.
#[derive(Clone, PartialEq)]
pub struct PasswordChange {
    /// The current password; empty for a name that has none yet.
    pub old: String,
    /// The new one.
    pub new: String,
}

/// Properties of [`PasswordForm`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// Where the change stands.
    pub status: Status,
    /// Whether the name has a password already (as far as the page knows).
    pub protected: bool,
    /// Asks for the change.
    pub on_change: Callback<PasswordChange>,
    /// Closes the form.
    pub on_close: Callback<()>,
}

/// The form, shown below the header while open.
#[function_component]
pub fn PasswordForm(props: &Props) -> Html {
    let old_ref = use_node_ref();
    let new_ref = use_node_ref();
    let repeat_ref = use_node_ref();
    // Why the new password is not sent (checked here, before sending).
    let local = use_state(|| None::<String>);

    // Once changed, the fields are emptied: nothing typed lingers in the page.
    {
        let refs = [old_ref.clone(), new_ref.clone(), repeat_ref.clone()];
        use_effect_with(props.status.clone(), move |status| {
            if *status == Status::Changed {
                for r in &refs {
                    if let Some(input) = r.cast::<HtmlInputElement>() {
                        input.set_value("");
                    }
                }
            }
        });
    }

    let onsubmit = {
        let (old_ref, new_ref, repeat_ref) = (old_ref.clone(), new_ref.clone(), repeat_ref.clone());
        let local = local.clone();
        let on_change = props.on_change.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|i| i.value())
                    .unwrap_or_default()
            };
            let (old, new, repeat) = (value(&old_ref), value(&new_ref), value(&repeat_ref));
            match new_password_problem(&new, &repeat) {
                Some(why) => {
                    local.set(Some(why));
                    if let Some(i) = new_ref.cast::<HtmlInputElement>() {
                        let _ = i.focus();
                    }
                }
                None => {
                    local.set(None);
                    on_change.emit(PasswordChange { old, new });
                }
            }
        })
    };
    let on_close = {
        let on_close = props.on_close.clone();
        move |_| on_close.emit(())
    };

    let (current_error, other_error) = match &props.status {
        Status::Failed {
            current: true,
            text,
        } => (Some(text.clone()), None),
        Status::Failed {
            current: false,
            text,
        } => (None, Some(text.clone())),
        _ => (None, None),
    };
    let new_error = (*local).clone();
    let sending = props.status == Status::Sending;
    let title = if props.protected {
        "Change your password"
    } else {
        "Protect your name with a password"
    };
    let error = |id: &'static str, text: Option<String>| field_message(id, "field-error", text);
    let changed = (props.status == Status::Changed)
        .then(|| "Your password was changed. Use it the next time you sign in.".to_owned());
    html! {
        <section class="password-form" aria-labelledby="password-title" data-testid="password-form">
            <form onsubmit={onsubmit}>
                <h2 id="password-title">{ title }</h2>
                <label for="old-password">
                    { if props.protected { "Current password" } else { "Current password (leave empty if your name has none)" } }
                </label>
                <input id="old-password" ref={old_ref} type="password" data-testid="old-password"
                    autocomplete="current-password"
                    aria-invalid={current_error.is_some().to_string()}
                    aria-describedby="old-password-error" />
                { error("old-password-error", current_error) }
                <label for="new-password">{ "New password (at least 8 characters)" }</label>
                <input id="new-password" ref={new_ref} type="password" data-testid="new-password"
                    autocomplete="new-password" aria-invalid={new_error.is_some().to_string()}
                    aria-describedby="new-password-error" />
                <label for="repeat-password">{ "New password again" }</label>
                <input id="repeat-password" ref={repeat_ref} type="password" data-testid="repeat-password"
                    autocomplete="new-password" aria-describedby="new-password-error" />
                { error("new-password-error", new_error) }
                { error("password-change-error", other_error) }
                { field_message("password-changed", "ok", changed) }
                <div class="actions">
                    <button type="submit" data-testid="change-password" disabled={sending}>
                        { if sending { "Saving…" } else if props.protected { "Change password" } else { "Set password" } }
                    </button>
                    <button type="button" data-testid="close-password" onclick={on_close}>{ "Close" }</button>
                </div>
            </form>
        </section>
    }
}
