//! Serving the web app: the copy built into the gateway (or a directory
//! given with `--web-dir`), with the right content types, compression,
//! `ETag`s, and cache headers that keep hashed trunk assets forever and
//! revalidate `index.html` every time.
//!
//! `index.html` is served with a `<base href>` of the gateway's base path,
//! so the app's relative asset links and its WebSocket address (`ws`,
//! relative to the document's base) work under a sub-path such as
//! `/chat/`, whatever the address the page was opened at. It also carries
//! `<meta name="chat-history-messages">`, `--history-messages`, which the
//! app reads to bound the history it keeps on the user's device.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use tower_http::compression::CompressionLayer;

/// The web app built by trunk when the gateway was compiled (see build.rs);
/// empty when it had not been built.
#[derive(rust_embed::Embed)]
#[folder = "$CHAT_WEB_DIST"]
#[allow_missing = true]
struct Embedded;

/// Whether a file name carries a content hash, as trunk's assets do
/// (`web-0123456789abcdef_bg.wasm`): such a file never changes.
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or(name);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

const NOT_BUILT: &str = "<!doctype html><title>Chat</title><h1>The web app is not built</h1>\
<p>This gateway was compiled before the web app was built. Build it and then the gateway:</p>\
<pre>cargo xtask run</pre><p>or <code>trunk build --release</code> followed by \
<code>cargo build --release -p gateway</code>. To serve a built copy without rebuilding, pass its \
directory with <code>--web-dir</code>.</p><p>The chat tunnel at <code>ws</code> works meanwhile, \
for native clients.</p>";

/// Where the app's files come from.
#[derive(Debug)]
enum Source {
    Embedded,
    Dir(PathBuf),
}

/// One file, ready to send.
struct Asset {
    body: Cow<'static, [u8]>,
    mime: String,
    etag: Option<String>,
}

/// The app's files, and what its `index.html` is told: the base path and
/// how many messages a conversation's history keeps.
#[derive(Debug)]
struct WebApp {
    source: Source,
    base_path: String,
    history_messages: u32,
}

impl WebApp {
    async fn get(&self, path: &str) -> Option<Asset> {
        match &self.source {
            Source::Embedded => {
                let file = Embedded::get(path)?;
                Some(Asset {
                    mime: file.metadata.mimetype().to_owned(),
                    etag: Some(etag(&file.metadata.sha256_hash())),
                    body: file.data,
                })
            }
            Source::Dir(dir) => {
                let relative = Path::new(path);
                // Only plain names: no `..`, no root, no prefix.
                if !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                {
                    return None;
                }
                let body = tokio::fs::read(dir.join(relative)).await.ok()?;
                Some(Asset {
                    mime: mime_guess::from_path(relative)
                        .first_or_octet_stream()
                        .to_string(),
                    etag: None,
                    body: Cow::Owned(body),
                })
            }
        }
    }

    /// `index.html` with the base path as the document's base, and the
    /// history's length in a `<meta>` the app reads.
    async fn index(&self) -> Option<Asset> {
        let asset = self.get("index.html").await?;
        let html = String::from_utf8_lossy(&asset.body);
        let base = format!(
            "<head><base href=\"{}\"><meta name=\"chat-history-messages\" content=\"{}\">",
            self.base_path, self.history_messages
        );
        let html = match html.find("<head>") {
            Some(at) => format!("{}{base}{}", &html[..at], &html[at + "<head>".len()..]),
            None => format!("{base}</head>{html}"),
        };
        Some(Asset {
            etag: asset.etag.map(|e| {
                format!(
                    "{}-{}-{}\"",
                    e.trim_end_matches('"'),
                    self.base_path.len(),
                    self.history_messages
                )
            }),
            body: Cow::Owned(html.into_bytes()),
            mime: "text/html; charset=utf-8".into(),
        })
    }

    fn has_app(&self) -> bool {
        match &self.source {
            Source::Embedded => Embedded::get("index.html").is_some(),
            Source::Dir(dir) => dir.join("index.html").is_file(),
        }
    }
}

fn etag(hash: &[u8; 32]) -> String {
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The router for everything that is not `/ws` or `/healthz`; `base_path`
/// is where the gateway serves (`/` or, say, `/chat/`), and
/// `history_messages` is told to the app.
pub fn router(web_dir: Option<&Path>, base_path: &str, history_messages: u32) -> Router {
    let source = match web_dir {
        Some(dir) => Source::Dir(dir.to_path_buf()),
        None => Source::Embedded,
    };
    let app = WebApp {
        source,
        base_path: base_path.to_owned(),
        history_messages,
    };
    if !app.has_app() {
        tracing::warn!(
            source = ?app.source,
            "no web app: serving a page that says how to build it"
        );
        return Router::new()
            .fallback(|| async { (StatusCode::OK, Html(NOT_BUILT)).into_response() });
    }
    Router::new()
        .fallback(serve)
        .with_state(Arc::new(app))
        .layer(CompressionLayer::new())
}

async fn serve(State(app): State<Arc<WebApp>>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let asset = if path.is_empty() || path == "index.html" {
        app.index().await
    } else {
        match app.get(path).await {
            Some(asset) => Some(asset),
            // A page address (no file extension) is the app itself.
            None if !path.rsplit('/').next().unwrap_or(path).contains('.') => app.index().await,
            None => None,
        }
    };
    match asset {
        Some(asset) => respond(asset, is_hashed(path), req.headers()),
        None => (StatusCode::NOT_FOUND, "no such file in the web app\n").into_response(),
    }
}

fn respond(asset: Asset, hashed: bool, request: &HeaderMap) -> Response {
    let cache = if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = asset.etag.as_deref().is_some_and(|etag| {
        request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim() == etag || v.trim() == "*")
    });
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from(asset.body));
        if let Ok(mime) = HeaderValue::from_str(&asset.mime) {
            res.headers_mut().insert(CONTENT_TYPE, mime);
        }
        res
    };
    let headers = res.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(etag) = asset.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(ETAG, etag);
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
