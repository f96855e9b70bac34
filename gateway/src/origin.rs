//! The `Origin` check that stops cross-site WebSocket hijacking: browsers
//! send cookies and credentials with a WebSocket handshake from any page,
//! so a page on another site must not be able to open a tunnel.

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// Whether a handshake with these headers may open a tunnel.
///
/// Requests without `Origin` come from native clients, not browsers, and
/// are allowed. A browser's `Origin` must name the host it connected to, or
/// be on the allow list (`*` allows any).
pub fn allowed(headers: &HeaderMap, allow: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allow
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn same_host_is_allowed() {
        assert!(allowed(
            &headers(Some("http://chat.local:8080"), "chat.local:8080"),
            &[]
        ));
        assert!(allowed(
            &headers(Some("https://Chat.Local"), "chat.local"),
            &[]
        ));
    }

    #[test]
    fn another_site_is_refused_unless_listed() {
        let h = headers(Some("https://evil.example"), "chat.local:8080");
        assert!(!allowed(&h, &[]));
        assert!(allowed(&h, &["https://evil.example".into()]));
        assert!(allowed(&h, &["*".into()]));
        assert!(!allowed(&headers(Some("null"), "chat.local"), &[]));
        assert!(!allowed(
            &headers(Some("http://chat.local:9999"), "chat.local:8080"),
            &[]
        ));
    }

    #[test]
    fn native_clients_without_origin_are_allowed() {
        assert!(allowed(&headers(None, "chat.local"), &[]));
    }
}
