//! A download in progress: the open body, a read-ahead block, and which
//! chunks have been sent. It ends when every chunk has been sent once.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use proto::limits::{chunk_count, chunk_len, CHUNK_SIZE};
use tokio::sync::OwnedSemaphorePermit;

use super::chunks::ChunkSet;

/// Bytes read from disk at a time.
pub(crate) const READ_AHEAD: u64 = 64 * 1024;

/// A download in progress, owned by its session's transfers.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) size: u32,
    pub(crate) body: Arc<File>,
    /// The read-ahead block: (offset, bytes).
    cache: (u64, Bytes),
    sent: ChunkSet,
    remaining: u32,
    _permit: OwnedSemaphorePermit,
}

impl Download {
    pub(crate) fn new(size: u32, body: File, permit: OwnedSemaphorePermit) -> Self {
        let chunks = chunk_count(size);
        Self {
            size,
            body: Arc::new(body),
            cache: (0, Bytes::new()),
            sent: ChunkSet::new(chunks),
            remaining: chunks,
            _permit: permit,
        }
    }

    /// The offset and length of chunk `chunk`, or why there is none.
    pub(crate) fn locate(&self, chunk: u32) -> Result<(u64, usize), String> {
        match chunk_len(self.size, chunk) {
            Some(len) => Ok((u64::from(chunk) * CHUNK_SIZE as u64, len)),
            None => Err(format!(
                "a {}-byte file has {} chunks; there is no chunk {chunk}",
                self.size,
                chunk_count(self.size)
            )),
        }
    }

    /// The bytes at `offset`, if the read-ahead block holds them.
    pub(crate) fn cached(&self, offset: u64, len: usize) -> Option<Bytes> {
        let (start, bytes) = &self.cache;
        let end = start + bytes.len() as u64;
        (offset >= *start && offset + len as u64 <= end).then(|| {
            let from = (offset - start) as usize;
            bytes.slice(from..from + len)
        })
    }

    /// The block to read for `offset`: (start, length).
    pub(crate) fn block_for(&self, offset: u64) -> (u64, usize) {
        let start = offset / READ_AHEAD * READ_AHEAD;
        (
            start,
            (u64::from(self.size) - start).min(READ_AHEAD) as usize,
        )
    }

    /// Keeps a block read from disk as the read-ahead.
    pub(crate) fn fill(&mut self, start: u64, bytes: Bytes) {
        self.cache = (start, bytes);
    }

    /// Records that `chunk` was sent; true once every chunk has been.
    pub(crate) fn sent(&mut self, chunk: u32) -> bool {
        if self.sent.insert(chunk) {
            self.remaining -= 1;
        }
        self.remaining == 0
    }
}
