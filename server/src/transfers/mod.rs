//! Uploads and downloads. Each session owns its transfers; each transfer
//! owns its file handle, its chunk set, its buffers, a permit of the
//! server's open-files cap and (uploads) its share of the quota, so that
//! dropping it releases all of them.
//!
//! A transfer sits behind an async lock of its own: its disk I/O runs on
//! the blocking pool while only that lock is held, never the session's.

pub(crate) mod chunks;
pub(crate) mod download;
pub(crate) mod quota;
pub(crate) mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::hub::now_ms;
use download::Download;
use upload::Upload;

/// One transfer, with when it was last used.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    last_used: AtomicU64,
    inner: tokio::sync::Mutex<T>,
}

impl<T> Slot<T> {
    fn new(t: T) -> Arc<Self> {
        Arc::new(Self {
            last_used: AtomicU64::new(now_ms()),
            inner: tokio::sync::Mutex::new(t),
        })
    }

    /// Locks the transfer, waiting for I/O another request started on it.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, T> {
        self.last_used.store(now_ms(), Ordering::Relaxed);
        self.inner.lock().await
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Upload(Arc<Slot<Upload>>),
    Download(Arc<Slot<Download>>),
}

impl Entry {
    fn last_used(&self) -> u64 {
        match self {
            Entry::Upload(s) => s.last_used.load(Ordering::Relaxed),
            Entry::Download(s) => s.last_used.load(Ordering::Relaxed),
        }
    }
}

/// Which kind of transfer a limit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Upload,
    Download,
}

/// The transfers of one session, by transaction number.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    map: Mutex<HashMap<u64, Entry>>,
}

fn transaction_number() -> u64 {
    loop {
        let n: u64 = rand::random();
        if n != 0 {
            return n;
        }
    }
}

impl Transfers {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many transfers of `kind` are open.
    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.lock()
            .values()
            .filter(|e| match e {
                Entry::Upload(_) => kind == Kind::Upload,
                Entry::Download(_) => kind == Kind::Download,
            })
            .count()
    }

    fn insert(&self, entry: Entry) -> u64 {
        let mut map = self.lock();
        loop {
            let t = transaction_number();
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(t) {
                v.insert(entry);
                return t;
            }
        }
    }

    /// Opens an upload; returns its transaction number.
    pub(crate) fn add_upload(&self, upload: Upload) -> u64 {
        self.insert(Entry::Upload(Slot::new(upload)))
    }

    /// Opens a download; returns its transaction number.
    pub(crate) fn add_download(&self, download: Download) -> u64 {
        self.insert(Entry::Download(Slot::new(download)))
    }

    /// The upload with this transaction number.
    pub(crate) fn upload(&self, transaction: u64) -> Option<Arc<Slot<Upload>>> {
        match self.lock().get(&transaction) {
            Some(Entry::Upload(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The download with this transaction number.
    pub(crate) fn download(&self, transaction: u64) -> Option<Arc<Slot<Download>>> {
        match self.lock().get(&transaction) {
            Some(Entry::Download(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Ends a transfer (finished or failed); its resources go with the
    /// last reference.
    pub(crate) fn remove(&self, transaction: u64) {
        let removed = self.lock().remove(&transaction);
        drop(removed);
    }

    /// Ends every transfer (the session ended).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }

    /// Ends the transfers idle for `idle` or longer; returns how many.
    pub(crate) fn sweep(&self, idle: Duration) -> usize {
        let now = now_ms();
        let idle = idle.as_millis() as u64;
        let mut map = self.lock();
        let before = map.len();
        let stale: Vec<Entry> = {
            let keys: Vec<u64> = map
                .iter()
                .filter(|(_, e)| now.saturating_sub(e.last_used()) >= idle)
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        let n = before - map.len();
        drop(map);
        drop(stale);
        n
    }
}
