//! `cargo xtask run`: build the web app, start the whole system.

use anyhow::Result;

use crate::tools::{sh, Tools};

/// Builds the web app in release mode, then the gateway with the app
/// inside, and runs it with its embedded chat server; extra arguments go
/// to the gateway.
pub(crate) fn run(extra: &[String]) -> Result<()> {
    let tools = Tools::ensure_all(false)?;
    if tools.root.join("web").exists() {
        sh(tools.cmd("trunk").args(["build", "--release", "--offline"]))?;
    } else {
        eprintln!("xtask: no web/ crate yet; the gateway will serve a notice instead of the app");
    }
    sh(tools
        .cmd("cargo")
        .args(["build", "--release", "--package", "gateway"]))?;
    let extra: Vec<&String> = extra.iter().skip_while(|a| *a == "--").collect();
    let gateway = tools.root.join("target/release/chat-gateway");
    let mut cmd = tools.cmd(&gateway.to_string_lossy());
    cmd.args(["--data-dir", "data"]).args(extra);
    eprintln!("xtask: starting the chat; open the http:// address printed below in a browser (Ctrl-C stops it)");
    sh(&mut cmd)
}
