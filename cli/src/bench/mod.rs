//! `chat bench SCENARIO`: many sessions from one process, over TCP or
//! through a gateway, with a table of what was measured.

pub mod broadcast;
pub mod dm;
pub mod files;
pub mod idle;
pub mod signin;
pub mod soak;
pub mod stats;

use std::time::Duration;

use clap::Subcommand;

use crate::session::{Session, SessionError};
use crate::transport::Target;

/// The scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// N pairs of users sending direct messages as fast as acknowledgements allow.
    Dm {
        /// Pairs of users.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Unacknowledged messages each sender keeps in flight.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Seconds to send for.
        #[arg(long, default_value_t = 5.0, value_parser = crate::parse_seconds)]
        seconds: f64,
        /// Message body size in bytes (at least 8).
        #[arg(long, default_value_t = 32)]
        size: usize,
    },
    /// One sender, many online receivers.
    Broadcast {
        /// Receivers.
        #[arg(long, default_value_t = 100)]
        receivers: usize,
        /// Broadcasts sent.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Unacknowledged broadcasts in flight.
        #[arg(long, default_value_t = 8)]
        window: usize,
    },
    /// Many sessions kept alive with SESSION PRESERVE.
    Idle {
        /// Sessions.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Seconds to hold them open after all are signed in.
        #[arg(long, default_value_t = 2.0, value_parser = crate::parse_seconds)]
        hold: f64,
    },
    /// Upload then download one file, for each window size.
    Files {
        /// File size in MiB.
        #[arg(long, default_value_t = 16)]
        mib: usize,
        /// Chunks in flight, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        windows: Vec<u32>,
    },
    /// Sign-ins per second, without a password and with one (Argon2id).
    Signin {
        /// Names signed in, in each round.
        #[arg(long, default_value_t = 200)]
        sessions: usize,
        /// Sign-ins under way at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Every kind of client at once, for minutes or hours, with a line of
    /// the server's memory, descriptors and disk every --report-every seconds.
    Soak(soak::Options),
}

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Where the server is.
    pub target: Target,
    /// The nodes of a cluster to spread sessions over, instead of
    /// `target` (empty: `target` only).
    pub spread: Vec<Target>,
    /// The server's process, for memory and CPU figures.
    pub server_pid: Option<u32>,
    /// How long to wait for the server.
    pub patience: Duration,
    /// A prefix that keeps this run's user names apart from other runs'.
    pub prefix: String,
}

impl Bench {
    /// Where session `i` of `role` connects: with `spread`, the `i`th node
    /// in turn, and a DM receiver the node after its sender's, so every
    /// direct message crosses nodes.
    fn target_for(&self, role: &str, i: usize) -> &Target {
        if self.spread.is_empty() {
            return &self.target;
        }
        let offset = usize::from(role == "dm-r");
        &self.spread[(i + offset) % self.spread.len()]
    }

    /// Opens a session for a bench user.
    pub async fn session(
        &self,
        role: &str,
        i: usize,
        window: u32,
    ) -> Result<Session, SessionError> {
        let name = format!("{}-{role}{i}", self.prefix);
        Session::open(
            self.target_for(role, i),
            &name,
            None,
            Session::config(window, true),
            self.patience,
        )
        .await
    }
}

/// Runs a scenario and prints its table.
pub async fn run(bench: Bench, scenario: Scenario) -> Result<(), SessionError> {
    if let Scenario::Soak(options) = scenario {
        return soak::run(&bench, options).await;
    }
    let before = bench.server_pid.and_then(stats::ProcessStats::read);
    let mut table = match scenario {
        Scenario::Dm {
            pairs,
            window,
            seconds,
            size,
        } => dm::run(&bench, pairs, window, seconds, size.max(8)).await?,
        Scenario::Broadcast {
            receivers,
            messages,
            window,
        } => broadcast::run(&bench, receivers, messages, window).await?,
        Scenario::Idle { sessions, hold } => idle::run(&bench, sessions, hold).await?,
        Scenario::Files { mib, windows } => files::run(&bench, mib, &windows).await?,
        Scenario::Signin {
            sessions,
            concurrency,
        } => signin::run(&bench, sessions, concurrency).await?,
        Scenario::Soak(_) => return Ok(()),
    };
    if let (Some(before), Some(after)) =
        (before, bench.server_pid.and_then(stats::ProcessStats::read))
    {
        table.row(
            "server peak RSS",
            format!("{:.1} MiB", after.peak_rss_kib as f64 / 1024.0),
        );
        table.row(
            "server CPU time",
            format!("{:.2} s", after.cpu_seconds - before.cpu_seconds),
        );
    }
    table.print();
    Ok(())
}
