//! Real services started on this machine, each in a temporary directory
//! on its own free loopback port, and stopped when dropped:
//! [`postgres::PgServer`] (a fresh `initdb` cluster) and
//! [`nats::NatsServer`]. The server's and the gateway's tests use them,
//! and so does `cargo xtask cluster`, so there is one way to start each.
//!
//! They panic, saying what is missing, when they cannot start: a test
//! that needs PostgreSQL fails rather than passing unrun.

pub mod nats;
pub mod postgres;

use std::collections::BTreeSet;
use std::process::Child;
use std::time::Duration;

/// How long to wait for anything in a test: `CHAT_TEST_TIMEOUT_SECS`, else
/// 10 s.
pub fn patience() -> Duration {
    patience_or(10.0)
}

/// `CHAT_TEST_TIMEOUT_SECS`, else `default_secs`: for tests whose waits
/// are longer by nature (a browser's).
pub fn patience_or(default_secs: f64) -> Duration {
    let secs = std::env::var("CHAT_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    Duration::from_secs_f64(secs)
}

/// A loopback port nobody listens on now, and one this process has not
/// been given before: the port is let go of before its user binds it, so
/// without the record two calls in a row could name the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
