//! Project automation, the Rust way (`cargo xtask`, an alias in
//! `.cargo/config.toml`):
//!
//! - `cargo xtask run [-- GATEWAY FLAGS]`: installs what is missing, builds
//!   the web app and starts the gateway with its embedded chat server.
//! - `cargo xtask cluster [--check]`: PostgreSQL, nats-server, three
//!   chat-server nodes and two gateways on this machine (`--check`: start,
//!   send a DM across nodes, stop).
//! - `cargo xtask test`: installs what is missing and runs every check:
//!   formatting, clippy, unit/property/integration tests, wasm tests in
//!   headless Chromium, end-to-end browser tests, the systemd units and a
//!   bounded fuzz run.
//!
//! # Layout
//! - `tools`: finding and installing the tools (each only when missing).
//! - `run`: the run command.
//! - `cluster`: the cluster command and its check.
//! - `test`: the test command and its summary.
//! - `deb`: the Debian package (`cargo xtask deb`).
//! - `units`: the package's systemd units, user and data directory,
//!   checked with systemd's tools.

mod cluster;
mod deb;
mod run;
mod test;
mod tools;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

const USAGE: &str =
    "usage: cargo xtask run [-- GATEWAY FLAGS]   build the web app and start the chat
       cargo xtask cluster [--check]        PostgreSQL, NATS, 3 nodes, 2 gateways (--check: start, DM across nodes, stop)
       cargo xtask test                     run every check and test
       cargo xtask tools                    install what is missing, and nothing else
       cargo xtask units                    check the package's systemd units (a step of test)
       cargo xtask deb                      build the Debian package (release build)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run::run(&args[1..]),
        Some("cluster") => cluster::cluster(&args[1..]),
        Some("test") => test::test(),
        Some("tools") => tools::Tools::ensure_all(true).map(|_| ()),
        Some("units") => units::build_and_check(),
        Some("deb") => deb::deb(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
