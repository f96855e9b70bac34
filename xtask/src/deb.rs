//! `cargo xtask deb`: the Debian package, in one command. Not part of
//! `cargo xtask test`, which never makes a release build.

use anyhow::{Context, Result};

use crate::tools::{sh, Tools};

/// The cargo-deb the package's metadata (gateway/Cargo.toml) is written for.
const CARGO_DEB: &str = "3.8.0";

/// Installs cargo-deb when missing, builds the web app and the three
/// programs in release mode (the gateway with the app inside), packs them
/// with the units and settings, and prints the package's path, size and
/// contents.
pub(crate) fn deb() -> Result<()> {
    let tools = Tools::ensure_all(false)?;
    if !tools.has("cargo", &["deb", "--version"], |v| {
        v.trim() == format!("cargo-deb {CARGO_DEB}")
    }) {
        sh(tools
            .cmd("cargo")
            .args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB]))?;
    }
    // The app first: the gateway embeds it when it is compiled.
    if tools.root.join("web").exists() {
        sh(tools.cmd("trunk").args(["build", "--release", "--offline"]))?;
    }
    // cargo-deb builds only the package it is given; the .deb holds the
    // programs of three.
    sh(tools.cmd("cargo").args([
        "build",
        "--release",
        "--package",
        "gateway",
        "--package",
        "server",
        "--package",
        "cli",
    ]))?;
    let out = tools.root.join("target/debian");
    // --strip: the release profile keeps line tables for backtraces.
    sh(tools
        .cmd("cargo")
        .args([
            "deb",
            "--package",
            "gateway",
            "--no-build",
            "--strip",
            "--output",
        ])
        .arg(&out))?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("chat_{version}-")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("no chat_{version}-*.deb in {}", out.display()))?;
    sh(tools.cmd("dpkg-deb").arg("--contents").arg(&deb))?;
    let size = std::fs::metadata(&deb)?.len();
    println!("{} ({size} bytes)", deb.display());
    Ok(())
}
