//! Idle sessions: many signed-in sessions kept alive, and what each costs
//! the server in memory.

use std::time::Duration;

use super::stats::{ProcessStats, Table};
use super::Bench;
use crate::session::SessionError;

/// Runs the scenario.
pub async fn run(bench: &Bench, sessions: usize, hold: f64) -> Result<Table, SessionError> {
    let before = bench.server_pid.and_then(ProcessStats::read);
    let mut open = Vec::with_capacity(sessions);
    for i in 0..sessions {
        open.push(bench.session("idle", i, 1).await?);
    }
    let after_open = bench.server_pid.and_then(ProcessStats::read);
    // Keep every session alive: each task answers its own keepalive timer.
    let tasks: Vec<_> = open
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs_f64(hold), async {
                    loop {
                        if s.next_event().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                s
            })
        })
        .collect();
    let mut alive = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            alive.push(s);
        }
    }
    let mut table = Table::new(format!("idle sessions: {sessions}, held {hold} s"));
    table.row("sessions open", alive.len().to_string());
    if let (Some(b), Some(a)) = (before, after_open) {
        let per = (a.rss_kib.saturating_sub(b.rss_kib)) as f64 * 1024.0 / sessions.max(1) as f64;
        table.row(
            "server RSS before",
            format!("{:.1} MiB", b.rss_kib as f64 / 1024.0),
        );
        table.row(
            "server RSS with all sessions",
            format!("{:.1} MiB", a.rss_kib as f64 / 1024.0),
        );
        table.row("server memory per session", format!("{:.0} bytes", per));
    }
    Ok(table)
}
