//! The chat protocol, implemented once for every part of the system.
//!
//! The server, the gateway's tests, the web app and the command-line client
//! all speak through this crate. It has no runtime dependency and compiles to
//! `wasm32-unknown-unknown`. The wire format is described in
//! `docs/PROTOCOL.md`.
//!
//! # Layout
//! - [`packet`]: the [`Packet`] enum, one variant per packet type, and the type numbers.
//! - [`encode`]: writing a packet as bytes.
//! - [`decode`]: the two-step incremental decoder (measure, then parse).
//! - [`error_code`]: the codes carried by the ERROR packet.
//! - [`limits`]: chunk size, name rules and other fixed limits.
//! - [`client`]: the sans-IO client core that native and web shells wrap.
//! - `codec` (feature `tokio-codec`): a `tokio_util::codec` adapter.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod client;
#[cfg(feature = "tokio-codec")]
pub mod codec;
pub mod decode;
pub mod encode;
pub mod error_code;
pub mod limits;
pub mod packet;
pub mod password;

pub use client::{Client, ClientConfig, ClientError, Event, TransferId};
pub use decode::{decode, decode_from, decode_request_from, DecodeError, Decoder};
pub use encode::EncodeError;
pub use error_code::ErrorCode;
pub use packet::{kind, Packet};
pub use password::Password;
