//! The `Origin` check that stops cross-site WebSocket hijacking: browsers
//! send cookies and credentials with a WebSocket handshake from any page,
//! so a page on another site must not be able to open a tunnel.
//!
//! In production the gateway is told its public origins
//! (`--public-origin`) and compares the browser's `Origin` with them only.
//! Without them it falls back to comparing `Origin` with the `Host` header,
//! which is convenient in development but defeated by DNS rebinding: a
//! hostile page whose name is re-pointed at the gateway sends a matching
//! `Host` and `Origin`.

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// Which origins may open a tunnel.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// The gateway's own public origins; when not empty, `Host` is ignored.
    pub public: Vec<String>,
    /// Other origins allowed (`*` allows any).
    pub allow: Vec<String>,
}

fn same_origin(listed: &str, origin: &str) -> bool {
    listed
        .trim()
        .trim_end_matches('/')
        .eq_ignore_ascii_case(origin)
}

impl OriginPolicy {
    /// Whether a handshake with these headers may open a tunnel.
    ///
    /// Requests without `Origin` come from native clients, not browsers,
    /// and are allowed. A browser's `Origin` must be on the allow list or,
    /// with public origins set, one of them; without public origins it must
    /// name the host it connected to.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self
            .allow
            .iter()
            .any(|a| a.trim() == "*" || same_origin(a, origin))
        {
            return true;
        }
        if !self.public.is_empty() {
            return self.public.iter().any(|p| same_origin(p, origin));
        }
        let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
    }
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

    fn allow(list: &[&str]) -> OriginPolicy {
        OriginPolicy {
            public: Vec::new(),
            allow: list.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn public(list: &[&str]) -> OriginPolicy {
        OriginPolicy {
            public: list.iter().map(|s| s.to_string()).collect(),
            allow: Vec::new(),
        }
    }

    #[test]
    fn same_host_is_allowed_without_public_origins() {
        let p = allow(&[]);
        assert!(p.allows(&headers(Some("http://chat.local:8080"), "chat.local:8080")));
        assert!(p.allows(&headers(Some("https://Chat.Local"), "chat.local")));
    }

    #[test]
    fn another_site_is_refused_unless_listed() {
        let h = headers(Some("https://evil.example"), "chat.local:8080");
        assert!(!allow(&[]).allows(&h));
        assert!(allow(&["https://evil.example"]).allows(&h));
        assert!(allow(&["*"]).allows(&h));
        assert!(!allow(&[]).allows(&headers(Some("null"), "chat.local")));
        assert!(!allow(&[]).allows(&headers(Some("http://chat.local:9999"), "chat.local:8080")));
    }

    #[test]
    fn native_clients_without_origin_are_allowed() {
        assert!(allow(&[]).allows(&headers(None, "chat.local")));
        assert!(public(&["https://chat.example.org"]).allows(&headers(None, "x")));
    }

    #[test]
    fn with_public_origins_the_host_header_is_not_consulted() {
        let p = public(&["https://chat.example.org/"]);
        // DNS rebinding: a hostile name pointed at the gateway sends a
        // matching Host and Origin, and is refused.
        assert!(!p.allows(&headers(
            Some("http://rebind.evil:8080"),
            "rebind.evil:8080"
        )));
        assert!(p.allows(&headers(
            Some("https://chat.example.org"),
            "rebind.evil:8080"
        )));
        assert!(p.allows(&headers(
            Some("https://CHAT.example.org"),
            "chat.example.org"
        )));
        assert!(!p.allows(&headers(
            Some("http://chat.example.org"),
            "chat.example.org"
        )));
    }

    #[test]
    fn allow_list_adds_to_public_origins() {
        let p = OriginPolicy {
            public: vec!["https://chat.example.org".into()],
            allow: vec!["https://partner.example".into()],
        };
        assert!(p.allows(&headers(Some("https://partner.example"), "x")));
        assert!(p.allows(&headers(Some("https://chat.example.org"), "x")));
        assert!(!p.allows(&headers(Some("https://other.example"), "x")));
    }
}
