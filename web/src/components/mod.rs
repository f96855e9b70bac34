//! The view, one component per region of the page.

mod conversation;
mod files;
mod header;
mod password;
mod sidebar;
mod sign_in;

pub use conversation::Conversation;
pub use files::FilesPanel;
pub use header::Header;
pub use password::{PasswordChange, PasswordForm};
pub use sidebar::Sidebar;
pub use sign_in::{Credentials, SignIn};

use yew::{html, AttrValue, Html};

/// The words under a form field: always in the page (empty and hidden when
/// there is nothing to say), so that showing them does not shift the
/// fields, which Yew would then build anew and lose what was typed in
/// them; `data-testid` is `id` while there are words.
pub fn field_message(id: &'static str, class: &'static str, text: Option<String>) -> Html {
    let shown = text.is_some();
    let role = if class == "ok" { "status" } else { "alert" };
    html! {
        <p id={id} class={class} role={role} hidden={!shown}
            data-testid={shown.then_some(AttrValue::Static(id))}>
            { text.unwrap_or_default() }
        </p>
    }
}
