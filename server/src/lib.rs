//! The chat server: a tokio TCP service speaking the `proto` packet format,
//! durable in an embedded SQLite database.
//!
//! # Layout
//! - [`config`]: every setting and limit, as clap flags with env vars.
//! - [`accounts`]: password-protected names (mode, Argon2id hashing, slowed guessing).
//! - [`server`]: start, accept loop, connection limit, session expiry, shutdown.
//! - `connection`: one client connection: read, decode, dispatch; the writer task.
//! - `outbox`: the bounded queue of bytes for one connection (slow readers are cut off).
//! - `handlers/`: one file per concept: session, users, messages, files.
//! - `hub`: live sessions: registry, presence and live delivery in this process.
//! - `bus`: live delivery between processes: local (one process) or NATS.
//! - `redelivery`: a mailbox sent page by page, paced by the client's acknowledgements.
//! - `transfers/`: uploads and downloads, each owning its file, chunk set,
//!   buffers and quota reservation (`quota`).
//! - `disk`: the free-disk floor.
//! - [`store`]: durable state behind a narrow interface; SQLite with group commit.
//! - [`backup`]: online backups of a data directory into one archive, and restores.
//! - `blobs`: file bodies on disk, named by file number only.
//! - `rate`: the per-session message rate limit.
//! - [`peers`]: limits per client address (connections, sign-ins), shared with the gateway.
//! - [`proxy_header`]: the PROXY protocol v2 header by which a trusted gateway names its client.
//! - [`observe`]: Prometheus metrics (names in one place) and the log format.
//! - [`signal`]: the shutdown signal, for the binaries.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounts;
pub mod backup;
mod blobs;
mod broadcasts;
mod bus;
pub mod config;
mod connection;
mod context;
mod disk;
mod handlers;
mod hub;
mod lease;
pub mod observe;
mod outbox;
mod owners;
pub mod peers;
mod pool;
pub mod proxy_header;
mod rate;
mod redelivery;
pub mod server;
pub mod signal;
pub mod store;
mod transfers;

pub use config::Config;
pub use server::{start, Connector, RunningServer, StartError};
