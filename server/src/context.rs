//! What every connection shares: settings, the store, file bodies, the hub.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proto::ErrorCode;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::hub::{Hub, Session};
use crate::store::Store;

/// Shared server state, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) blobs: Blobs,
    pub(crate) hub: Hub,
    /// Bytes of files stored or reserved by uploads in progress.
    pub(crate) storage_used: AtomicU64,
}

impl Context {
    /// Reserves `size` bytes of the storage quota; false if it is used up.
    pub(crate) fn reserve_storage(&self, size: u64) -> bool {
        let quota = self.config.storage_quota;
        self.storage_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + size <= quota).then_some(used + size)
            })
            .is_ok()
    }

    /// Returns a reservation of an upload that will not finish.
    pub(crate) fn release_storage(&self, size: u64) {
        self.storage_used.fetch_sub(size, Ordering::AcqRel);
    }

    /// Ends a session already removed from the hub: its uploads are
    /// discarded and its connection, if any, is closed with `why`.
    pub(crate) async fn end_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
        code: ErrorCode,
        why: String,
    ) {
        let (uploads, conn) = {
            let mut st = session.state();
            st.ended = true;
            st.downloads.clear();
            (std::mem::take(&mut st.uploads), st.conn.take())
        };
        for upload in uploads.into_values() {
            self.blobs.discard(upload.file);
            self.release_storage(u64::from(upload.size));
            if let Err(e) = self.store.discard_file(upload.file).await {
                tracing::warn!(error = %e, file = upload.file, "could not forget a discarded upload");
            }
        }
        if let Some(conn) = conn {
            conn.close(code, why);
        }
        tracing::info!(session = session.id, user = session.user, name = %session.name, "session ended");
    }
}
