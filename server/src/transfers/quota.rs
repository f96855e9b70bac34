//! The storage quota: bytes of files stored and reserved, for the whole
//! server and for each user's uploads in progress.
//!
//! A [`Reservation`] holds an upload's share. Dropped, it gives the bytes
//! back and removes the upload's partial body and row; kept, the bytes
//! stay charged to the stored file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::blobs::Blobs;
use crate::store::Store;

/// The quota's settings and what is charged against it.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Bytes of files stored or reserved by uploads in progress.
    used: AtomicU64,
    limit: u64,
    /// Bytes reserved by each user's uploads in progress.
    reserved: Mutex<HashMap<u64, u64>>,
    user_limit: u64,
    min_charge: u64,
    /// Uploads whose row this process holds a reservation for.
    live: Mutex<HashSet<u64>>,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaRefused {
    /// The server's quota is used up.
    Server,
    /// The user's uploads in progress already reserve this many bytes.
    User(u64),
}

/// What a dropped reservation must remove: an upload's body and row.
#[derive(Debug)]
struct Part {
    file: u64,
    blobs: Blobs,
    store: Store,
}

/// Bytes reserved for one upload; see the module's description.
#[derive(Debug)]
pub(crate) struct Reservation {
    quota: Arc<Quota>,
    user: u64,
    charge: u64,
    part: Option<Part>,
    kept: bool,
}

impl Quota {
    /// A quota of `limit` bytes of which `stored` are used, each user's
    /// uploads in progress reserving at most `user_limit`, every file
    /// charged at least `min_charge`.
    pub(crate) fn new(stored: u64, limit: u64, user_limit: u64, min_charge: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(stored),
            limit,
            reserved: Mutex::new(HashMap::new()),
            user_limit,
            min_charge,
            live: Mutex::new(HashSet::new()),
        })
    }

    /// Reserves room for a file of `size` bytes uploaded by `user`.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        user: u64,
        size: u64,
    ) -> Result<Reservation, QuotaRefused> {
        let charge = size.max(self.min_charge);
        {
            let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
            let mine = reserved.get(&user).copied().unwrap_or(0);
            if mine + charge > self.user_limit {
                return Err(QuotaRefused::User(mine));
            }
            self.used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    (used + charge <= self.limit).then_some(used + charge)
                })
                .map_err(|_| QuotaRefused::Server)?;
            reserved.insert(user, mine + charge);
        }
        Ok(Reservation {
            quota: self.clone(),
            user,
            charge,
            part: None,
            kept: false,
        })
    }

    /// The uploads this process holds a reservation for: an unfinished
    /// upload row of this node that is not among them has no owner (its
    /// creation's answer was lost, or its discard failed).
    pub(crate) fn live_uploads(&self) -> Vec<u64> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Bytes charged now (stored and reserved).
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

impl Reservation {
    /// The reservation now also owns upload `file`'s partial body and row.
    pub(crate) fn attach(&mut self, file: u64, blobs: Blobs, store: Store) {
        self.quota
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file);
        self.part = Some(Part { file, blobs, store });
    }

    /// The file is stored: its bytes stay charged, its body stays.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(part) = &self.part {
            self.quota
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&part.file);
        }
        {
            let mut reserved = self
                .quota
                .reserved
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(r) = reserved.get_mut(&self.user) {
                *r = r.saturating_sub(self.charge);
                if *r == 0 {
                    reserved.remove(&self.user);
                }
            }
        }
        if self.kept {
            return;
        }
        self.quota.used.fetch_sub(self.charge, Ordering::AcqRel);
        if let Some(Part { file, blobs, store }) = self.part.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let _ = tokio::task::spawn_blocking(move || blobs.discard(file)).await;
                        if let Err(e) = store.discard_file(file).await {
                            tracing::warn!(error = %e, file, "could not forget a discarded upload");
                        }
                    });
                }
                // Outside the runtime (the server is gone): remove the body;
                // the row goes when the store next opens.
                Err(_) => blobs.discard(file),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_charged_at_least_the_minimum_and_returned_on_drop() {
        let q = Quota::new(0, 10_000, 6_000, 1_000);
        let a = q.reserve(1, 10).unwrap();
        assert_eq!(q.used(), 1_000);
        let b = q.reserve(1, 5_000).unwrap();
        assert_eq!(q.reserve(1, 1).unwrap_err(), QuotaRefused::User(6_000));
        let c = q.reserve(2, 3_000).unwrap();
        assert_eq!(q.reserve(3, 1_500).unwrap_err(), QuotaRefused::Server);
        drop(a);
        drop(c);
        assert_eq!(q.used(), 5_000);
        b.keep();
        assert_eq!(q.used(), 5_000, "a kept file stays charged");
        assert!(q.reserve(1, 5_000).is_ok(), "but is no longer in progress");
    }
}
