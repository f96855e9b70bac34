//! Telling the user a message arrived while they look elsewhere: desktop
//! notifications (opt-in, through the Notification API) while the tab is
//! hidden, and an unread count on the favicon next to the title's.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Notification, NotificationOptions, NotificationPermission};

/// The `localStorage` key of the user's choice (the permission alone is
/// per site; the choice is whether this app should use it).
const CHOICE_KEY: &str = "chat.notifications";

/// Whether this browser can show notifications at all.
pub fn supported() -> bool {
    web_sys::window()
        .is_some_and(|w| js_sys::Reflect::has(&w, &"Notification".into()).unwrap_or(false))
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Whether the user turned notifications on and the browser allows them.
pub fn enabled() -> bool {
    supported()
        && Notification::permission() == NotificationPermission::Granted
        && local_storage()
            .and_then(|s| s.get_item(CHOICE_KEY).ok().flatten())
            .is_some_and(|v| v == "on")
}

/// Turns notifications on (asking the browser's permission first) or off;
/// the answer is whether they are on now, or why not.
pub async fn set_enabled(on: bool) -> Result<bool, String> {
    let store = |value: &str| {
        if let Some(s) = local_storage() {
            let _ = s.set_item(CHOICE_KEY, value);
        }
    };
    if !on {
        store("off");
        return Ok(false);
    }
    if !supported() {
        return Err("This browser cannot show notifications.".into());
    }
    if Notification::permission() != NotificationPermission::Granted {
        let asked = Notification::request_permission().map_err(|e| crate::browser::describe(&e))?;
        let _ = wasm_bindgen_futures::JsFuture::from(asked).await;
    }
    if Notification::permission() == NotificationPermission::Granted {
        store("on");
        Ok(true)
    } else {
        Err(
            "Notifications are blocked for this site; allow them in the browser's site settings."
                .into(),
        )
    }
}

/// Whether the page is out of sight (another tab, a minimised window).
pub fn hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden())
}

/// Shows a notification; clicking it brings the tab back. Messages of one
/// conversation replace each other (`tag`) rather than pile up.
pub fn show(title: &str, body: &str, tag: &str) {
    let options = NotificationOptions::new();
    options.set_body(body);
    options.set_tag(tag);
    if let Ok(n) = Notification::new_with_options(title, &options) {
        let onclick = Closure::<dyn FnMut()>::new(|| {
            if let Some(w) = web_sys::window() {
                let _ = w.focus();
            }
        });
        n.set_onclick(Some(onclick.as_ref().unchecked_ref()));
        // Lives as long as the page: one small closure per notification.
        onclick.forget();
    }
}

/// At most this much of a message goes into its notification.
const BODY_CHARS: usize = 140;

/// A message's text cut for a notification.
pub fn body_of(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(BODY_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The favicon: a speech bubble, with the unread count on a red badge when
/// there is one (shown in the tab strip next to the title's count).
pub fn favicon_svg(unread: u32) -> String {
    let bubble = "<path d='M6 8h36a4 4 0 0 1 4 4v20a4 4 0 0 1-4 4H20l-9 8v-8H6a4 4 0 0 1-4-4V12a4 4 0 0 1 4-4z' fill='%230b62d6'/>";
    let badge = match unread {
        0 => String::new(),
        n => {
            let label = if n > 99 {
                "99+".to_owned()
            } else {
                n.to_string()
            };
            let size = if label.len() > 2 { 14 } else { 20 };
            format!(
                "<circle cx='46' cy='18' r='17' fill='%23d92d20' stroke='white' stroke-width='3'/>\
                 <text x='46' y='25' font-size='{size}' font-family='Arial,sans-serif' font-weight='bold' \
                 text-anchor='middle' fill='white'>{label}</text>"
            )
        }
    };
    format!("data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'>{bubble}{badge}</svg>")
}

/// Sets the page's favicon to [`favicon_svg`].
pub fn set_favicon(unread: u32) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let link = match document.query_selector("link[rel~='icon']").ok().flatten() {
        Some(link) => link,
        None => {
            let Ok(link) = document.create_element("link") else {
                return;
            };
            let _ = link.set_attribute("rel", "icon");
            if let Some(head) = document.head() {
                let _ = head.append_child(&link);
            }
            link
        }
    };
    let _ = link.set_attribute("href", &favicon_svg(unread));
    let _ = link.set_attribute("data-unread", &unread.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_long_message_is_cut_for_its_notification() {
        assert_eq!(body_of("short"), "short");
        let long = "é".repeat(200);
        let cut = body_of(&long);
        assert_eq!(cut.chars().count(), BODY_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn the_favicon_carries_the_unread_count() {
        assert!(!favicon_svg(0).contains("<text"));
        assert!(favicon_svg(3).contains(">3</text>"));
        assert!(favicon_svg(250).contains(">99+</text>"));
        assert!(favicon_svg(1).starts_with("data:image/svg+xml,<svg"));
        // '#' would end a data URL: colours are escaped.
        assert!(!favicon_svg(5).contains('#'));
    }
}
