//! The few browser services the app uses, behind plain functions; each
//! fails quietly (no storage, no window) rather than panicking.

use wasm_bindgen::JsCast;

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// A value from `sessionStorage`.
pub fn session_get(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

/// Stores a value in `sessionStorage` (survives reloads of this tab).
pub fn session_set(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// Removes a value from `sessionStorage`.
pub fn session_remove(key: &str) {
    if let Some(s) = storage() {
        let _ = s.remove_item(key);
    }
}

/// Milliseconds on the page's monotonic clock.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// The page's base URI (`document.baseURI`: the `<base href>` if the page
/// has one, else its own address), which the app's own URLs are relative to.
pub fn base_uri() -> Option<String> {
    web_sys::window()?.document()?.base_uri().ok()?
}

/// A `Blob` of a copy of `bytes` (the copy lives in the browser, outside
/// the app's memory), or why the browser could not make one.
pub fn blob_of(bytes: &[u8]) -> Result<web_sys::Blob, String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|e| describe(&e))
}

/// Offers the parts, one after the other, to the user as a downloaded file
/// called `name`.
pub fn save_parts(name: &str, parts: &[web_sys::Blob]) -> Result<(), String> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let list = parts.iter().collect::<js_sys::Array>();
    let blob = web_sys::Blob::new_with_blob_sequence(&list).map_err(|e| describe(&e))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| describe(&e))?;
    let a = document
        .create_element("a")
        .map_err(|e| describe(&e))?
        .unchecked_into::<web_sys::HtmlAnchorElement>();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // Revoke later: the download starts asynchronously.
    gloo_timers::callback::Timeout::new(60_000, move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    })
    .forget();
    Ok(())
}

/// A JavaScript exception in words.
pub fn describe(e: &wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

/// Reads `len` bytes of a file (or any blob) from `offset`: only that
/// slice is copied into the app's memory.
pub async fn read_slice(blob: &web_sys::Blob, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let slice = blob
        .slice_with_f64_and_f64(offset as f64, (offset + len) as f64)
        .map_err(|e| describe(&e))?;
    let buffer = wasm_bindgen_futures::JsFuture::from(slice.array_buffer())
        .await
        .map_err(|e| describe(&e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Bytes of the app's WebAssembly memory. It only ever grows, so this is
/// also the most the app has held at once (shown on the page for the
/// end-to-end tests that check a large file never sits in it whole).
pub fn wasm_memory_bytes() -> u32 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .unchecked_into::<js_sys::ArrayBuffer>()
                .byte_length()
        })
        .unwrap_or(0)
}
