//! Self-fencing. A server on PostgreSQL is a node of a cluster: it holds a
//! lease in the `nodes` table, renewed every third of its length and
//! judged by PostgreSQL's clock, so that other nodes can tell when it is
//! gone. A node that cannot renew before the lease ends, by its own
//! monotonic clock, stops serving at once: its connections refuse further
//! requests, and the server shuts down (the process exits with an error,
//! for its supervisor to start it again as a new node). So a node that was
//! paused (SIGSTOP, a stalled VM) or cut off from the database never goes
//! on acting for sessions another node may have taken over.
//!
//! The local deadline is counted from the moment a renewal was *sent*, less
//! a tenth, so it always ends before PostgreSQL's: the database set its end
//! from its own `now()`, which is later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::now_ms;
use crate::observe::names;
use crate::store::NodeLease;

/// This node's number and how long it may go on serving.
#[derive(Debug)]
pub(crate) struct Lease {
    node: u64,
    /// [`now_ms`] after which the node must not serve.
    until_ms: AtomicU64,
    /// The lease's length, less the margin, in milliseconds.
    valid_ms: u64,
    /// Why the node stopped serving, once it has.
    fenced: OnceLock<String>,
}

impl Lease {
    /// The lease of node `node`, whose row was written at `sent_ms` (by
    /// [`now_ms`]) with a lease of `length`.
    pub(crate) fn new(node: u64, length: Duration, sent_ms: u64) -> Self {
        let valid_ms = (length.as_millis() as u64).saturating_mul(9) / 10;
        Self {
            node,
            until_ms: AtomicU64::new(sent_ms.saturating_add(valid_ms)),
            valid_ms,
            fenced: OnceLock::new(),
        }
    }

    /// The node's number in the cluster.
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// Whether the node may serve now.
    pub(crate) fn held(&self) -> bool {
        self.fenced.get().is_none() && now_ms() < self.until_ms.load(Ordering::Acquire)
    }

    /// Why the node stopped serving, if it has.
    pub(crate) fn fenced(&self) -> Option<&str> {
        self.fenced.get().map(String::as_str)
    }

    fn renewed(&self, sent_ms: u64) {
        self.until_ms
            .fetch_max(sent_ms.saturating_add(self.valid_ms), Ordering::AcqRel);
    }

    fn fence(&self, why: String, shutdown: &CancellationToken) {
        metrics::gauge!(names::LEASE_HELD).set(0.0);
        tracing::error!(node = self.node, why = %why, "lease lost: this node stops serving");
        let _ = self.fenced.set(why);
        shutdown.cancel();
    }
}

/// Renews `lease` through `db` every third of `length` until `shutdown`;
/// fences the node (and cancels `shutdown`) when the lease is lost. Calls
/// `peer_ended` when a renewal finds that another node's lease has ended
/// since the last one (or since this node joined): that node may have
/// committed messages it never published, which a catch-up reads from the
/// store, and left unfinished uploads, which pruning removes.
pub(crate) async fn keep(
    lease: Arc<Lease>,
    mut db: NodeLease,
    length: Duration,
    shutdown: CancellationToken,
    peer_ended: impl Fn(),
) {
    metrics::gauge!(names::LEASE_HELD).set(1.0);
    metrics::gauge!(names::NODE).set(lease.node() as f64);
    let every = length / 3;
    loop {
        // Wake for the next renewal, or when the lease would end.
        let left = lease
            .until_ms
            .load(Ordering::Acquire)
            .saturating_sub(now_ms());
        let wait = every.min(Duration::from_millis(left));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if !lease.held() {
            lease.fence(
                format!("its lease was not renewed within {length:?}"),
                &shutdown,
            );
            return;
        }
        let sent = now_ms();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(every, db.renew()) => r,
        };
        let outcome = match result {
            Ok(Ok(renewal)) if renewal.held => {
                lease.renewed(sent);
                if renewal.peer_ended {
                    peer_ended();
                }
                "renewed"
            }
            Ok(Ok(_)) => {
                metrics::counter!(names::LEASE_RENEWALS, "result" => "lost").increment(1);
                lease.fence(
                    "its lease had ended by PostgreSQL's clock; another node may hold its sessions"
                        .into(),
                    &shutdown,
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease not renewed; trying again");
                "failed"
            }
            Err(_) => {
                tracing::warn!("lease renewal timed out; trying again");
                "failed"
            }
        };
        metrics::counter!(names::LEASE_RENEWALS, "result" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_deadline_ends_before_the_databases() {
        let lease = Lease::new(7, Duration::from_secs(10), now_ms());
        assert!(lease.held());
        let until = lease.until_ms.load(Ordering::Acquire);
        assert!(until <= now_ms() + 9_000, "a tenth is kept as a margin");
        // A late answer to an older renewal never shortens the lease.
        lease.renewed(0);
        assert_eq!(lease.until_ms.load(Ordering::Acquire), until);
    }

    #[test]
    fn a_fenced_node_does_not_serve_and_says_why() {
        let lease = Lease::new(1, Duration::from_secs(10), now_ms());
        let token = CancellationToken::new();
        lease.fence("lost".into(), &token);
        assert!(!lease.held());
        assert_eq!(lease.fenced(), Some("lost"));
        assert!(token.is_cancelled());
    }

    #[test]
    fn an_expired_lease_is_not_held() {
        let lease = Lease::new(1, Duration::from_millis(1), 0);
        assert!(!lease.held());
    }
}
