//! The chat's browser app: a Yew client that speaks the chat protocol over
//! the gateway's WebSocket, through the sans-IO core in `proto`.
//!
//! # Layout
//! - `app`: the root component: state, connection, persistence, drag and drop.
//! - `state`: the state and its reducer (pure, tested natively and in Chromium).
//! - `connection`: the WebSocket shell around `proto::Client`.
//! - `browser`: storage, clock, file reading and saving.
//! - `history`: conversations kept in IndexedDB per server and name.
//! - `record`: the history's records and the tab's snapshot as JSON.
//! - `components/`: sign-in, header, sidebar, conversation, files.
//! - `format`: sizes and speeds.
//! - `tabs`: other tabs of this browser, and taking a session over.
//! - `notify`: desktop notifications and the favicon's unread badge.
//! - `timeline`: how a conversation reads: days, groups, links (pure).
#![forbid(unsafe_code)]
// A binary crate: `pub` items are visible to the crate only, as intended.
#![allow(unreachable_pub)]

mod app;
mod browser;
mod components;
mod connection;
mod format;
mod history;
mod notify;
mod record;
mod state;
mod tabs;
mod timeline;

// The unit tests run natively and, with `--target wasm32-unknown-unknown`,
// in headless Chromium.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn main() {
    console_error_panic_hook::set_once();
    yew::Renderer::<app::App>::new().render();
}
