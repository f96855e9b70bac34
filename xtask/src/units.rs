//! The package's systemd files, checked by systemd's own tools: the units
//! in `deploy/systemd/` with `systemd-analyze verify`, and the service
//! user and data directory (`deploy/debian/chat.sysusers`, `chat.tmpfile`)
//! with `systemd-sysusers` and `systemd-tmpfiles`.
//!
//! Everything runs against a scratch root (`--root`), laid out as the
//! package installs it: the units in `/etc/systemd/system`, the system's
//! own units (targets the ours depend on) in `/usr/lib/systemd/system`,
//! and the project's binaries, as built, in `/usr/bin`, because `verify`
//! checks that each `ExecStart=` program exists and is executable.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tools::show;

/// The units the package installs, by file name in `deploy/systemd/`.
pub(crate) const UNITS: [&str; 2] = ["chat-gateway.service", "chat-server.service"];

/// The programs the units start, by file name in the build's output.
pub(crate) const PROGRAMS: [&str; 2] = ["chat-gateway", "chat-server"];

/// The service user and its data directory, as the package makes them.
const USER: &str = "chat";
const DATA_DIR: &str = "var/lib/chat";

/// A scratch root for the checks, made anew.
#[derive(Debug)]
pub(crate) struct Root {
    dir: PathBuf,
}

impl Root {
    /// Lays out `dir` (emptied first) with the system's units and
    /// `programs` (name, built file) in `/usr/bin`.
    pub(crate) fn new(dir: &Path, programs: &[(&str, PathBuf)]) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        for sub in [
            "etc/systemd/system",
            "usr/bin",
            "usr/lib/systemd",
            "var/lib",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // The targets our units name (multi-user.target, network-online.target)
        // and the ones every service depends on (sysinit.target, ...).
        run(Command::new("cp")
            .arg("-a")
            .arg("/usr/lib/systemd/system")
            .arg(dir.join("usr/lib/systemd/")))?;
        for (name, built) in programs {
            let to = dir.join("usr/bin").join(name);
            // A hard link is instant; a copy if the build is on another
            // file system.
            if std::fs::hard_link(built, &to).is_err() {
                std::fs::copy(built, &to)
                    .with_context(|| format!("cannot copy {} (build it first)", built.display()))?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Installs a file at `to` (relative to the root).
    pub(crate) fn install(&self, from: &Path, to: &str) -> Result<()> {
        let to = self.dir.join(to);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        Ok(())
    }

    /// `systemd-analyze verify` on `units` (installed already); any line it
    /// prints is a failure, since it exits 0 on warnings such as an
    /// unknown key or a value it ignores.
    pub(crate) fn verify(&self, units: &[&str]) -> Result<()> {
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify")
            // No man pages for Documentation=file: links to look up.
            .arg("--man=no")
            .arg(format!("--root={}", self.dir.display()))
            .args(units)
            .current_dir(&self.dir);
        let said = run(&mut cmd)?;
        if !said.trim().is_empty() {
            bail!("systemd-analyze verify warns:\n{said}");
        }
        Ok(())
    }

    /// Creates the service user and its data directory the way the
    /// package's scripts do, and checks the result: a system user (uid
    /// below 1000) with its home in the data directory, and the directory
    /// owned by it and closed to others.
    pub(crate) fn user_and_data_dir(&self) -> Result<()> {
        run(Command::new("systemd-sysusers")
            .arg(format!("--root={}", self.dir.display()))
            .arg("chat.conf"))?;
        run(Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", self.dir.display()))
            .arg("--create")
            .arg("chat.conf"))?;
        let passwd = std::fs::read_to_string(self.dir.join("etc/passwd"))?;
        let Some(entry) = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&USER))
        else {
            bail!("systemd-sysusers made no user {USER}: {passwd}");
        };
        let uid: u32 = entry.get(2).and_then(|u| u.parse().ok()).context("uid")?;
        if uid == 0 || uid >= 1000 || entry.get(5) != Some(&"/var/lib/chat") {
            bail!("{USER} is not a system user with home /var/lib/chat: {entry:?}");
        }
        let meta = std::fs::metadata(self.dir.join(DATA_DIR))
            .with_context(|| format!("systemd-tmpfiles made no /{DATA_DIR}"))?;
        if meta.uid() != uid || meta.mode() & 0o007 != 0 {
            bail!(
                "/{DATA_DIR} is owned by {} with mode {:o}, not by {USER} and closed to others",
                meta.uid(),
                meta.mode() & 0o777
            );
        }
        Ok(())
    }
}

/// Runs a command; its standard output and error, or an error with them.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{} failed ({}):\n{said}", show(cmd), out.status);
    }
    Ok(said)
}

/// The step of `cargo xtask test`: the shipped units, user and data
/// directory, with the binaries from `bin_dir` (the debug build the tests
/// made).
pub(crate) fn check(root: &Path, bin_dir: &Path) -> Result<()> {
    let programs: Vec<(&str, PathBuf)> = PROGRAMS.iter().map(|p| (*p, bin_dir.join(p))).collect();
    let scratch = Root::new(&root.join("target/systemd-check"), &programs)?;
    for unit in UNITS {
        scratch.install(
            &root.join("deploy/systemd").join(unit),
            &format!("etc/systemd/system/{unit}"),
        )?;
    }
    scratch.verify(&UNITS)?;
    scratch.install(
        &root.join("deploy/debian/chat.sysusers"),
        "usr/lib/sysusers.d/chat.conf",
    )?;
    scratch.install(
        &root.join("deploy/debian/chat.tmpfile"),
        "usr/lib/tmpfiles.d/chat.conf",
    )?;
    scratch.user_and_data_dir()?;
    eprintln!(
        "xtask: systemd-analyze verify passed on {}; the chat user and /{DATA_DIR} are made as packaged",
        UNITS.join(", ")
    );
    Ok(())
}

/// `cargo xtask units`: builds the programs the units start (debug, as
/// the tests do) and runs the step alone.
pub(crate) fn build_and_check() -> Result<()> {
    let root = crate::root();
    crate::tools::sh(
        Command::new("cargo")
            .args(["build", "--package", "server", "--package", "gateway"])
            .current_dir(&root),
    )?;
    check(&root, &root.join("target/debug"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with a stand-in program: these tests are about what the
    /// check notices in a unit, not about our binaries.
    fn root_with(unit: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(
            &dir.path().join("root"),
            &[("chat-gateway", PathBuf::from("/bin/true"))],
        )
        .unwrap();
        let file = dir.path().join("t.service");
        std::fs::write(&file, unit).unwrap();
        root.install(&file, "etc/systemd/system/t.service").unwrap();
        (dir, root)
    }

    const GOOD: &str = "[Service]\nExecStart=/usr/bin/chat-gateway\n";

    #[test]
    fn a_plain_unit_passes() {
        let (_dir, root) = root_with(GOOD);
        root.verify(&["t.service"]).unwrap();
    }

    #[test]
    fn a_warning_fails_the_check_though_systemd_analyze_exits_0() {
        let (_dir, root) = root_with(&format!("{GOOD}ProtectSystem=stricter\n"));
        let err = root.verify(&["t.service"]).unwrap_err().to_string();
        assert!(
            err.contains("ProtectSystem") || err.contains("protect"),
            "{err}"
        );
        let (_dir, root) = root_with(&format!("{GOOD}NoSuchKey=1\n"));
        let err = root.verify(&["t.service"]).unwrap_err().to_string();
        assert!(err.contains("NoSuchKey"), "{err}");
    }

    #[test]
    fn a_missing_program_fails_the_check() {
        let (_dir, root) = root_with("[Service]\nExecStart=/usr/bin/chat-nothing\n");
        let err = root.verify(&["t.service"]).unwrap_err().to_string();
        assert!(err.contains("chat-nothing"), "{err}");
    }
}
