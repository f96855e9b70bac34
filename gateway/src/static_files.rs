//! Serving the built web app: right content types, compression, and cache
//! headers that keep hashed trunk assets forever and `index.html` never.

use std::path::Path;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};

/// Whether a file name carries a content hash, as trunk's assets do
/// (`web-0123456789abcdef_bg.wasm`): such a file never changes.
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or(name);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

async fn cache_headers(req: Request, next: Next) -> Response {
    let hashed = is_hashed(req.uri().path());
    let mut res = next.run(req).await;
    if res.status() == StatusCode::OK {
        let value = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    res
}

const NOT_BUILT: &str = "<!doctype html><title>Chat</title><p>The web app has not been built. \
Run <code>cargo xtask run</code>, or <code>trunk build --release</code> and pass its output with \
<code>--web-dir</code>.</p>";

/// The router for everything that is not `/ws` or `/healthz`.
pub fn router(web_dir: &Path) -> Router {
    let index = web_dir.join("index.html");
    if !index.exists() {
        tracing::warn!(dir = %web_dir.display(), "no web app found; serving a notice at /");
        return Router::new()
            .fallback(|| async { (StatusCode::OK, Html(NOT_BUILT)).into_response() });
    }
    let files = ServeDir::new(web_dir).fallback(ServeFile::new(index));
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_headers))
        .layer(middleware::from_fn(wasm_content_type))
        .layer(CompressionLayer::new())
}

/// Makes sure `.wasm` is served as `application/wasm`, which browsers
/// require for streaming compilation.
async fn wasm_content_type(req: Request, next: Next) -> Response {
    let wasm = req.uri().path().ends_with(".wasm");
    let mut res = next.run(req).await;
    if wasm && res.status() == StatusCode::OK {
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::is_hashed;

    #[test]
    fn trunk_hashed_names_are_recognised() {
        assert!(is_hashed("/web-1a2b3c4d5e6f7a8b_bg.wasm"));
        assert!(is_hashed("/web-1a2b3c4d5e6f7a8b.js"));
        assert!(is_hashed("/style-0123456789abcdef0123.css"));
        assert!(!is_hashed("/index.html"));
        assert!(!is_hashed("/"));
        assert!(!is_hashed("/my-notes.txt"));
    }
}
