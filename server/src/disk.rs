//! The free-disk floor: below it, writes that a client asks for (direct
//! messages, uploads) are refused with INSUFFICIENT_STORAGE before anything
//! is written, so the disk never fills to where SQLite or a file body
//! would fail half-way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What is known of the data directory's disk.
#[derive(Debug)]
pub(crate) struct Disk {
    dir: PathBuf,
    floor: u64,
    free: AtomicU64,
    low: AtomicBool,
}

impl Disk {
    /// Watches the disk of `dir`, keeping `floor` bytes free.
    pub(crate) fn new(dir: PathBuf, floor: u64) -> Self {
        let disk = Self {
            dir,
            floor,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        };
        disk.refresh();
        disk
    }

    /// Reads the free space again (a `statvfs`: quick, but a system call
    /// on the disk's metadata, so it runs on a timer and not per write).
    pub(crate) fn refresh(&self) {
        match rustix::fs::statvfs(&self.dir) {
            Ok(st) => {
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                self.free.store(free, Ordering::Relaxed);
                let low = free < self.floor;
                if low != self.low.swap(low, Ordering::Relaxed) {
                    if low {
                        tracing::warn!(
                            free,
                            floor = self.floor,
                            "disk nearly full: refusing writes"
                        );
                    } else {
                        tracing::info!(free, "disk has room again");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the free disk space"),
        }
    }

    /// The error text if a write of `bytes` must be refused, `None` if it fits.
    pub(crate) fn refuse(&self, bytes: u64) -> Option<String> {
        let free = self.free.load(Ordering::Relaxed);
        (self.low.load(Ordering::Relaxed) || free.saturating_sub(bytes) < self.floor).then(|| {
            format!(
                "the server's disk is nearly full ({free} bytes free, {} kept in reserve); nothing was saved",
                self.floor
            )
        })
    }
}
