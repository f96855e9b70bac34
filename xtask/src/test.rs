//! `cargo xtask test`: every check, in the order that fails fastest, with
//! one summary line at the end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::tools::{sh, show, Tools};

/// Test counts summed over every `cargo test` run.
#[derive(Debug, Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    /// Reads a `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (Some(n), Some(what)) = (words.iter().rev().nth(1), words.last()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match *what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs a test command, echoing its output and counting its results.
fn counted(cmd: &mut Command, counts: &mut Counts) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            counts.add_line(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs every check; fails on the first failure.
pub(crate) fn test() -> Result<()> {
    let tools = Tools::ensure_all(true)?;
    let root = tools.root.clone();
    let mut counts = Counts::default();
    let fuzz_seconds = std::env::var("CHAT_FUZZ_SECONDS").unwrap_or_else(|_| "30".into());

    sh(tools.cmd("cargo").args(["fmt", "--all", "--", "--check"]))?;
    // The app first: the gateway embeds it when it is compiled, and its
    // tests check that it did.
    let web_app = root.join("web").exists();
    if web_app {
        sh(tools.cmd("trunk").args(["build", "--release", "--offline"]))?;
    }
    sh(tools.cmd("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut workspace_tests = tools.cmd("cargo");
    workspace_tests.args(["test", "--workspace"]);
    patient(&mut workspace_tests);
    if web_app {
        workspace_tests.env("CHAT_EXPECT_WEB_APP", "1");
    }
    counted(&mut workspace_tests, &mut counts)?;
    // A few seconds: the whole cluster from the debug binaries just built.
    crate::cluster::self_check(&root.join("target/debug"))?;
    // After the tests, which built the binaries the units start.
    crate::units::check(&root, &root.join("target/debug"))?;
    sh(tools
        .cmd("cargo")
        .args(["bench", "--workspace", "--no-run"]))?;
    sh(tools.cmd("cargo").args([
        "build",
        "--package",
        "proto",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    // The shipped nginx and Caddy configurations in front of a gateway
    // (90 s of silence each, run side by side).
    let mut proxies = tools.cmd("cargo");
    proxies.args([
        "test",
        "--package",
        "gateway",
        "--test",
        "reverse_proxy",
        "--",
        "--ignored",
    ]);
    patient(&mut proxies);
    if web_app {
        proxies.env("CHAT_EXPECT_WEB_APP", "1");
    }
    counted(&mut proxies, &mut counts)?;
    if web_app {
        counted(
            tools
                .cmd("cargo")
                .args([
                    "test",
                    "--package",
                    "web",
                    "--target",
                    "wasm32-unknown-unknown",
                ])
                .env("CHROMEDRIVER", "/usr/bin/chromedriver")
                // Its default (20 s) includes starting Chromium.
                .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
            &mut counts,
        )?;
    }
    if root.join("e2e").exists() {
        counted(
            tools
                .cmd("cargo")
                .args([
                    "test",
                    "--package",
                    "e2e",
                    "--",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("CHROMEDRIVER", "/usr/bin/chromedriver")
                // Its default (20 s) includes starting Chromium.
                .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
            &mut counts,
        )?;
    }
    if root.join("fuzz").exists() {
        sh(tools
            .cmd("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                "decode",
                "--",
            ])
            .arg(format!("-max_total_time={fuzz_seconds}")))?;
    }
    if counts.passed == 0 {
        bail!("no test ran");
    }
    eprintln!(
        "xtask: every step passed ({} tests ignored by cargo test are run by the e2e step)",
        counts.ignored
    );
    println!("{} passed, {} failed", counts.passed, counts.failed);
    Ok(())
}

/// A fresh 2-core machine building and testing at once is slow: the
/// tests' waits for events get 30 s unless told otherwise, three times
/// their own default, which only lengthens a wait that would otherwise
/// fail.
fn patient(tests: &mut std::process::Command) {
    if std::env::var_os("CHAT_TEST_TIMEOUT_SECS").is_none() {
        tests.env("CHAT_TEST_TIMEOUT_SECS", "30");
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn cargo_test_summaries_are_summed() {
        let mut c = Counts::default();
        c.add_line("test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        c.add_line(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("running 4 tests");
        assert_eq!((c.passed, c.failed, c.ignored), (15, 1, 2));
    }
}
