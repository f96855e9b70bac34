//! Where the chat's WebSocket is: `ws` resolved against the page's base URI,
//! so the app works under any path a gateway or proxy serves it from.

/// The WebSocket URL for a page whose `document.baseURI` is `base`: `ws`
/// relative to it, with `http` turned into `ws` and `https` into `wss`.
/// `None` if `base` is not an http(s) URL.
///
/// `https://example.org/chat/` → `wss://example.org/chat/ws`;
/// `http://h:8080/index.html?x#y` → `ws://h:8080/ws`.
pub fn socket_url(base: &str) -> Option<String> {
    let (scheme, rest) = base.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    // The query and fragment are not part of the path to resolve against.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    // A relative reference replaces the last path segment (RFC 3986, 5.2.3).
    let dir = &path[..=path.rfind('/').unwrap_or(0)];
    Some(format!("{scheme}://{authority}{dir}ws"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_socket_sits_next_to_the_page() {
        assert_eq!(
            socket_url("https://example.org/chat/").as_deref(),
            Some("wss://example.org/chat/ws")
        );
        assert_eq!(
            socket_url("http://h:8080/").as_deref(),
            Some("ws://h:8080/ws")
        );
        assert_eq!(
            socket_url("http://h:8080").as_deref(),
            Some("ws://h:8080/ws")
        );
        assert_eq!(
            socket_url("HTTPS://example.org/a/b/index.html?x=/y#/z").as_deref(),
            Some("wss://example.org/a/b/ws")
        );
        assert_eq!(
            socket_url("http://[::1]:8080/chat/app/").as_deref(),
            Some("ws://[::1]:8080/chat/app/ws")
        );
    }

    #[test]
    fn only_web_pages_have_a_socket() {
        assert_eq!(socket_url("file:///home/a/index.html"), None);
        assert_eq!(socket_url("about:blank"), None);
        assert_eq!(socket_url("http:///nohost"), None);
    }
}
