//! What every connection shares: settings, the store, file bodies, the
//! hub, and the server-wide limits.

use std::sync::Arc;

use proto::ErrorCode;
use tokio::sync::Semaphore;

use crate::accounts::Accounts;
use crate::blobs::Blobs;
use crate::bus::Bus;
use crate::config::Config;
use crate::disk::Disk;
use crate::hub::{Hub, Session};
use crate::lease::Lease;
use crate::outbox::Budget;
use crate::peers::PeerLimits;
use crate::store::Store;
use crate::transfers::quota::Quota;

/// Shared server state, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) blobs: Blobs,
    pub(crate) hub: Arc<Hub>,
    /// Live delivery, in this process or through NATS to the others.
    pub(crate) bus: Bus,
    /// Bytes of files stored or reserved, for the whole server and per user.
    pub(crate) quota: Arc<Quota>,
    /// One permit per transfer holding a file open.
    pub(crate) open_files: Arc<Semaphore>,
    /// Bytes queued for every connection together.
    pub(crate) budget: Arc<Budget>,
    /// Connections and sign-ins per client address.
    pub(crate) peers: Arc<PeerLimits>,
    pub(crate) disk: Disk,
    pub(crate) accounts: Accounts,
    /// This node's lease in a cluster (PostgreSQL); `None` alone on SQLite.
    pub(crate) lease: Option<Arc<Lease>>,
}

impl Context {
    /// Whether this server may serve requests now: always alone, and in a
    /// cluster while its lease holds.
    pub(crate) fn serving(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.held())
    }

    /// This node's number in the cluster; 0 alone.
    pub(crate) fn node(&self) -> u64 {
        self.lease.as_ref().map_or(0, |l| l.node())
    }

    /// Why connections are closing when the server stops.
    pub(crate) fn stop_reason(&self) -> String {
        match self.lease.as_ref().and_then(|l| l.fenced()) {
            Some(why) => format!("this server stopped serving: {why}; connect again"),
            None if !self.serving() => {
                "this server's lease in the cluster ran out; connect again".into()
            }
            None => "the server is shutting down".into(),
        }
    }

    /// Ends a session already removed from the hub: its transfers are
    /// dropped (uploads discarded, quota returned, files closed) and its
    /// connection, if any, is closed with `why`.
    pub(crate) fn end_session(&self, session: &Arc<Session>, code: ErrorCode, why: String) {
        let (conn, was_ended) = {
            let mut st = session.state();
            let was_ended = std::mem::replace(&mut st.ended, true);
            (session.set_conn(&mut st, None), was_ended)
        };
        if !was_ended {
            self.bus.unlisten(session.user);
            if self.store.is_shared() {
                // The name is free in the cluster, unless another node or
                // session has it by now.
                let (store, node) = (self.store.clone(), self.node());
                let (user, id) = (session.user, session.id);
                tokio::spawn(async move {
                    if let Err(e) = store.session_ended(user, id, node).await {
                        tracing::warn!(error = %e, user, "the name's row was not freed");
                    }
                });
            }
        }
        session.transfers.clear();
        session.acked.notify_waiters();
        if let Some(conn) = conn {
            conn.close(code, why);
        }
        tracing::info!(session = session.id, user = session.user, name = %session.name, "session ended");
    }
}
