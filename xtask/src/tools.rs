//! Finding the tools the build needs and installing each one only when it
//! is missing or has the wrong version, so a second run starts in seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs a command, echoing it, and fails if it fails.
pub(crate) fn sh(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

pub(crate) fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The first line a command prints, if it runs and succeeds.
fn output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(text.trim().to_owned())
}

/// The version of a package recorded in Cargo.lock.
fn locked_version(root: &Path, package: &str) -> Result<String> {
    let lock =
        std::fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .with_context(|| format!("{package} is not in Cargo.lock"))?
        + needle.len();
    let end = lock[start..].find('"').context("malformed Cargo.lock")? + start;
    Ok(lock[start..end].to_owned())
}

/// Where tools live and how to reach them.
#[derive(Debug)]
pub(crate) struct Tools {
    /// The workspace root.
    pub(crate) root: PathBuf,
    /// A PATH with the project's own tool directories in front.
    pub(crate) path: String,
}

impl Tools {
    /// Installs, when missing, everything both commands need; with
    /// `browser`, also Chromium, chromedriver, nginx, Caddy and the fuzzer.
    pub(crate) fn ensure_all(browser: bool) -> Result<Self> {
        let tools = Self::new();
        tools.wasm_target()?;
        if tools.root.join("web").exists() {
            tools.trunk()?;
            tools.wasm_bindgen()?;
            tools.wasm_opt()?;
        }
        if browser {
            tools.debian_packages()?;
            tools.cargo_fuzz()?;
        }
        Ok(tools)
    }

    /// Installs, when missing, what `cargo xtask cluster` needs: Debian's
    /// PostgreSQL and nats-server (the release binaries need nothing else).
    pub(crate) fn ensure_cluster() -> Result<Self> {
        let tools = Self::new();
        let mut missing = Vec::new();
        if !has_postgres() {
            missing.push("postgresql");
        }
        if !Path::new("/usr/sbin/nats-server").exists()
            && !Path::new("/usr/bin/nats-server").exists()
        {
            missing.push("nats-server");
        }
        if !missing.is_empty() {
            apt_install(&missing)?;
        }
        Ok(tools)
    }

    fn new() -> Self {
        let root = crate::root();
        let binaryen = root.join("target/tools/binaryen/node_modules/.bin");
        let cargo_bin = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .map(|p| p.join("bin"))
            .unwrap_or_default();
        let path = format!(
            "{}:{}:{}",
            binaryen.display(),
            cargo_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self { root, path }
    }

    /// A command with the tools on its PATH, run from the workspace root.
    pub(crate) fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", &self.path).current_dir(&self.root);
        c
    }

    pub(crate) fn has(&self, program: &str, args: &[&str], want: impl Fn(&str) -> bool) -> bool {
        let found = Command::new(program)
            .args(args)
            .env("PATH", &self.path)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        found.as_deref().is_some_and(want)
    }

    fn wasm_target(&self) -> Result<()> {
        let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
        if installed
            .lines()
            .any(|l| l.trim() == "wasm32-unknown-unknown")
        {
            return Ok(());
        }
        sh(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
    }

    fn trunk(&self) -> Result<()> {
        // trunk 0.22 needs a newer rustc than this project targets.
        if self.has("trunk", &["--version"], |v| v.starts_with("trunk 0.21.")) {
            return Ok(());
        }
        sh(self
            .cmd("cargo")
            .args(["install", "trunk", "--version", "~0.21", "--locked"]))
    }

    fn wasm_bindgen(&self) -> Result<()> {
        // trunk uses the wasm-bindgen on PATH only if it matches Cargo.lock;
        // otherwise it tries to download one.
        let version = locked_version(&self.root, "wasm-bindgen")?;
        if self.has("wasm-bindgen", &["--version"], |v| {
            v.trim() == format!("wasm-bindgen {version}")
        }) {
            return Ok(());
        }
        // Not --locked: its lock file names a crate the registry mirror lacks.
        sh(self
            .cmd("cargo")
            .args(["install", "wasm-bindgen-cli", "--version", &version]))
    }

    fn wasm_opt(&self) -> Result<()> {
        // Debian's binaryen is too old for current rustc output; npm's works.
        if self.has("wasm-opt", &["--version"], |v| v.contains("version 132")) {
            return Ok(());
        }
        let prefix = self.root.join("target/tools/binaryen");
        std::fs::create_dir_all(&prefix)?;
        sh(self
            .cmd("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg("binaryen@132"))
        .context("installing wasm-opt needs npm (Node.js)")
    }

    /// Debian's packages for the tests: PostgreSQL for the PostgreSQL
    /// engine's tests, nats-server for the bus between servers, Chromium
    /// and its driver for the browser tests, nginx and Caddy for the
    /// reverse-proxy tests, and systemd's tools for the check of the
    /// package's units (a container may lack them).
    fn debian_packages(&self) -> Result<()> {
        const WANTED: [(&str, &str); 8] = [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
            ("/usr/sbin/nginx", "nginx"),
            ("/usr/bin/caddy", "caddy"),
            // The multi-node tests start their own (server/tests/common/nats.rs).
            ("/usr/sbin/nats-server", "nats-server"),
            ("/usr/bin/systemd-analyze", "systemd"),
            ("/usr/bin/systemd-sysusers", "systemd"),
            ("/usr/bin/systemd-tmpfiles", "systemd"),
        ];
        let mut missing: Vec<&str> = WANTED
            .iter()
            .filter(|(path, _)| !Path::new(path).exists())
            .map(|(_, package)| *package)
            .collect();
        // The PostgreSQL engine's tests start their own server from any
        // /usr/lib/postgresql/VERSION/bin (server/tests/common/postgres.rs),
        // so any version Debian ships will do.
        if !has_postgres() {
            missing.push("postgresql");
        }
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        apt_install(&missing)
    }

    fn cargo_fuzz(&self) -> Result<()> {
        let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
        if !toolchains.lines().any(|l| l.starts_with("nightly")) {
            sh(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]))?;
        }
        if self.has("cargo", &["+nightly", "fuzz", "--version"], |v| {
            v.starts_with("cargo-fuzz")
        }) {
            return Ok(());
        }
        sh(self
            .cmd("cargo")
            .args(["install", "cargo-fuzz", "--locked"]))
    }
}

/// Whether any /usr/lib/postgresql/VERSION/bin/postgres exists.
fn has_postgres() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| version.path().join("bin/postgres").exists())
}

/// Installs Debian packages (through sudo unless root).
fn apt_install(packages: &[&str]) -> Result<()> {
    let root = output("id", &["-u"]).is_some_and(|u| u == "0");
    let apt = |args: &[&str]| -> Result<()> {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut c)
    };
    apt(&["update"])?;
    apt(&[&["install", "-y"][..], packages].concat())
}
