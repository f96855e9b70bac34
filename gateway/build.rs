//! Chooses the built web app that the gateway embeds, and tells the
//! compiler where it is (`CHAT_WEB_DIST`, read by `rust-embed`).
//!
//! - `CHAT_WEB_DIST`, if set, names the directory.
//! - Otherwise trunk's output in the workspace, `dist/`, when it exists
//!   (`cargo xtask run`, `cargo xtask test` and `trunk build --release`
//!   make it).
//! - Otherwise, in a release build with `trunk` on the PATH (as with
//!   `cargo install --path gateway`), the app is built here, into this
//!   crate's build directory, so that the installed binary is a whole chat.
//! - Otherwise the gateway is built without the app, and serves a page
//!   that says how to build it: `cargo build` and `cargo test` work on a
//!   fresh clone with no WebAssembly toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CHAT_WEB_DIST");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let dist = match std::env::var_os("CHAT_WEB_DIST") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("dist"),
    };
    // A directory is scanned whole for changes; a missing one makes this
    // script run again at every build, which is what notices the app once
    // it has been built.
    println!("cargo:rerun-if-changed={}", dist.display());
    let chosen = if dist.join("index.html").is_file() {
        dist
    } else {
        match build_here(&root) {
            Some(dir) => dir,
            None => {
                println!(
                    "cargo:warning=the web app is not built ({} is missing): this gateway serves \
                     a page saying how to build it. Run `trunk build --release` first to embed it.",
                    dist.join("index.html").display()
                );
                dist
            }
        }
    };
    println!("cargo:rustc-env=CHAT_WEB_DIST={}", chosen.display());
}

/// In a release build with trunk at hand, builds the app into OUT_DIR.
fn build_here(root: &Path) -> Option<PathBuf> {
    if std::env::var("PROFILE").ok()? != "release" || !root.join("index.html").is_file() {
        return None;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    // Built every time this script runs (trunk's own build is incremental
    // in web-target): a copy kept from an earlier run could be stale.
    let dist = out.join("web-dist");
    let status = Command::new("trunk")
        .args(["build", "--release", "--dist"])
        .arg(&dist)
        .current_dir(root)
        // A target directory of its own: the outer build holds the lock of
        // the workspace's. Flags meant for this crate's build are not for
        // the WebAssembly one.
        .env("CARGO_TARGET_DIR", out.join("web-target"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status();
    match status {
        Ok(s) if s.success() && dist.join("index.html").is_file() => Some(dist),
        Ok(s) => {
            println!("cargo:warning=building the web app with trunk failed ({s})");
            None
        }
        Err(e) => {
            println!("cargo:warning=trunk is not available ({e}); install it with `cargo install trunk --version '~0.21' --locked`");
            None
        }
    }
}
