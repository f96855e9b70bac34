//! The chat gateway: lets browsers reach the TCP chat server over a
//! WebSocket, the way websockify lets noVNC reach a VNC server, serves the
//! web app, and can run the chat server in-process so that one command
//! runs the whole system.
//!
//! # Layout
//! - [`config`]: flags and limits; the embedded server's settings are flattened in.
//! - [`app`]: the routes: `/ws`, `/healthz`, the web app.
//! - [`tunnel`]: the two byte pumps between a WebSocket and a TCP connection.
//! - [`origin`]: the `Origin` check against cross-site WebSocket hijacking.
//! - [`forwarded`]: the browser's address behind trusted reverse proxies.
//! - [`static_files`]: the web app (built in, or `--web-dir`) with content
//!   types, compression, cache headers and the base path.
//! - [`serve`]: binding, optional TLS, the embedded server, graceful shutdown.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod app;
pub mod config;
pub mod forwarded;
pub mod origin;
pub mod serve;
pub mod static_files;
pub mod tunnel;

pub use config::GatewayConfig;
pub use serve::{start, GatewayError, RunningGateway};
