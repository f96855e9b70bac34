//! The HTTP side: health, static files, content types and cache headers.

mod common;

use common::{header, http_get, TestGateway};

#[tokio::test]
async fn healthz_answers_200_when_the_chat_server_is_up() {
    let gw = TestGateway::start().await;
    let (status, _, body) = http_get(gw.addr, "/healthz", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
}

#[tokio::test]
async fn the_web_app_is_served_with_content_types_and_cache_headers() {
    let gw = TestGateway::start().await;
    let wasm = gw.web.path().join("web-0123456789abcdef_bg.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let (status, headers, body) = http_get(gw.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<title>chat</title>"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/html"));

    let (status, headers, body) = http_get(gw.addr, "/web-0123456789abcdef_bg.wasm", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"\0asm\x01\0\0\0");
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
}

#[tokio::test]
async fn large_text_assets_are_compressed_when_the_browser_accepts_it() {
    let gw = TestGateway::start().await;
    std::fs::write(
        gw.web.path().join("app-0123456789abcdef.js"),
        "console.log('x');\n".repeat(500),
    )
    .unwrap();
    let (status, headers, body) = http_get(
        gw.addr,
        "/app-0123456789abcdef.js",
        &[("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(body.len() < 9000 / 4, "{} bytes", body.len());
}
