//! Sign-ins per second: without a password, claiming a name (one Argon2id
//! hash each), and signing in to an account (one verification each).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use super::stats::Table;
use super::Bench;
use crate::session::{Session, SessionError};

const PASSWORD: &str = "bench password";

/// Signs in `sessions` names, `concurrency` at a time; returns sign-ins/s.
async fn round(
    bench: &Bench,
    role: &str,
    sessions: usize,
    concurrency: usize,
    password: Option<&'static str>,
) -> Result<f64, SessionError> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (bench, next, role) = (bench.clone(), next.clone(), role.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= sessions {
                        return Ok::<(), SessionError>(());
                    }
                    let name = format!("{}-{role}{i}", bench.prefix);
                    // A name signed in a moment ago may not have been seen
                    // to leave yet: NAME_IN_USE is retried a few times.
                    let mut tries = 0;
                    loop {
                        let opened = Session::open(
                            &bench.target,
                            &name,
                            password,
                            Session::config(1, true),
                            bench.patience,
                        )
                        .await;
                        match opened {
                            Ok(s) => break drop(s),
                            Err(SessionError::Server {
                                code: proto::ErrorCode::NameInUse,
                                ..
                            }) if tries < 100 => {
                                tries += 1;
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await
            .map_err(|e| SessionError::Check(format!("a sign-in task failed: {e}")))??;
    }
    Ok(sessions as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the scenario.
pub async fn run(
    bench: &Bench,
    sessions: usize,
    concurrency: usize,
) -> Result<Table, SessionError> {
    let plain = round(bench, "plain", sessions, concurrency, None).await?;
    let claim = round(bench, "account", sessions, concurrency, Some(PASSWORD)).await?;
    // The sessions of the last round may still be ending: the same names
    // sign in again, so wait for none.
    let again = round(bench, "account", sessions, concurrency, Some(PASSWORD)).await?;
    let mut table = Table::new(format!(
        "sign-ins: {sessions} names, {concurrency} at a time"
    ));
    table.row(
        "without a password (SESSION REQUEST)",
        format!("{plain:.0}/s"),
    );
    table.row(
        "claiming a name (ACCOUNT SIGN IN, one hash)",
        format!("{claim:.0}/s"),
    );
    table.row(
        "with a password (ACCOUNT SIGN IN, one check)",
        format!("{again:.0}/s"),
    );
    Ok(table)
}
