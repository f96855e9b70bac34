//! Windowed (pipelined) chunk transfers, in both directions.
//!
//! A transfer keeps up to `window` chunk requests in flight and sends the
//! next one as each answer arrives, so throughput is bounded by bandwidth
//! rather than by round trips.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::limits::{chunk_count, chunk_len, CHUNK_SIZE};

use super::event::TransferId;

/// Which way the bytes move.
#[derive(Debug, Clone)]
pub(crate) enum Direction {
    /// The whole file's bytes, held until every chunk is acknowledged.
    Upload { name: String, data: Bytes },
    /// Only the file number; the size comes with FILE DATA RESPONSE.
    Download,
}

/// One transfer's progress.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    pub(crate) id: TransferId,
    pub(crate) direction: Direction,
    /// Known at once for uploads; from FILE UPLOAD/DATA RESPONSE otherwise.
    pub(crate) file: Option<u64>,
    pub(crate) size: Option<u32>,
    pub(crate) transaction: Option<u64>,
    /// Chunks not yet requested (download) or sent (upload), in order.
    next: u32,
    /// Chunks sent and not yet answered.
    in_flight: BTreeSet<u32>,
    /// Chunks answered.
    done: u32,
    /// Whether the request that opens the transaction is on the wire.
    pub(crate) opening: bool,
    /// A transaction the server ended while chunks were still wanted;
    /// answers and errors naming it are stale.
    pub(crate) retired: Option<u64>,
}

impl Transfer {
    pub(crate) fn upload(id: TransferId, name: String, data: Bytes) -> Self {
        let size = u32::try_from(data.len()).ok();
        Self::new(id, Direction::Upload { name, data }, None, size)
    }

    pub(crate) fn download(id: TransferId, file: u64) -> Self {
        Self::new(id, Direction::Download, Some(file), None)
    }

    fn new(id: TransferId, direction: Direction, file: Option<u64>, size: Option<u32>) -> Self {
        Self {
            id,
            direction,
            file,
            size,
            transaction: None,
            next: 0,
            in_flight: BTreeSet::new(),
            done: 0,
            opening: false,
            retired: None,
        }
    }

    pub(crate) fn is_upload(&self) -> bool {
        matches!(self.direction, Direction::Upload { .. })
    }

    fn total_chunks(&self) -> Option<u32> {
        self.size.map(chunk_count)
    }

    /// Whether the transaction is open and the size known, so chunks can move.
    pub(crate) fn ready(&self) -> bool {
        self.transaction.is_some() && self.size.is_some()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.ready() && Some(self.done) == self.total_chunks()
    }

    /// Bytes answered so far.
    pub(crate) fn done_bytes(&self) -> u64 {
        let size = u64::from(self.size.unwrap_or(0));
        (u64::from(self.done) * CHUNK_SIZE as u64).min(size)
    }

    /// The next chunk numbers to send, filling the window.
    pub(crate) fn fill_window(&mut self, window: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Some(total) = self.total_chunks() else {
            return out;
        };
        if !self.ready() {
            return out;
        }
        while (self.in_flight.len() as u32) < window && self.next < total {
            self.in_flight.insert(self.next);
            out.push(self.next);
            self.next += 1;
        }
        out
    }

    /// Records an answer for `chunk`; false if it was not in flight.
    pub(crate) fn answered(&mut self, chunk: u32) -> bool {
        if self.in_flight.remove(&chunk) {
            self.done += 1;
            true
        } else {
            false
        }
    }

    /// The bytes of upload chunk `chunk`.
    pub(crate) fn upload_chunk(&self, chunk: u32) -> Option<Bytes> {
        let Direction::Upload { data, .. } = &self.direction else {
            return None;
        };
        let len = chunk_len(self.size?, chunk)?;
        let start = chunk as usize * CHUNK_SIZE;
        Some(data.slice(start..start + len))
    }

    /// Whether `data` has the length chunk `chunk` must have.
    pub(crate) fn chunk_fits(&self, chunk: u32, data: &[u8]) -> bool {
        self.size.and_then(|s| chunk_len(s, chunk)) == Some(data.len())
    }

    /// The connection dropped: chunks in flight must be sent again.
    pub(crate) fn connection_lost(&mut self) {
        if let Some(first) = self.in_flight.first().copied() {
            self.next = self.next.min(first);
        }
        // Chunks are answered in order, so everything from the first one
        // in flight onwards is resent; the done count is unchanged.
        self.in_flight.clear();
        self.opening = false;
    }

    /// The server no longer knows the download's transaction (it ended the
    /// download when every chunk had been sent, and the answers to the last
    /// ones were lost with a connection): open a new one and ask again for
    /// what has not arrived. What has arrived is kept.
    pub(crate) fn reopen(&mut self) {
        self.connection_lost();
        self.retired = self.transaction.take();
    }

    /// The session was lost: the transaction is gone, start over.
    pub(crate) fn restart(&mut self) {
        self.transaction = None;
        self.next = 0;
        self.done = 0;
        self.in_flight.clear();
        self.opening = false;
        if self.is_upload() {
            self.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_chunks_in_flight() {
        let mut t = Transfer::upload(1, "f".into(), Bytes::from(vec![7u8; 1000]));
        assert!(t.fill_window(2).is_empty(), "no transaction yet");
        t.transaction = Some(9);
        assert_eq!(t.fill_window(2), vec![0, 1]);
        assert!(t.fill_window(2).is_empty());
        assert!(t.answered(0));
        assert!(!t.answered(0), "a second answer is ignored");
        assert_eq!(t.fill_window(2), vec![2]);
        assert_eq!(t.upload_chunk(3).map(|b| b.len()), Some(1000 - 768));
        assert_eq!(t.upload_chunk(4), None);
    }

    #[test]
    fn lost_connection_resends_chunks_in_flight() {
        let mut t = Transfer::download(1, 5);
        t.size = Some(2000);
        t.transaction = Some(3);
        assert_eq!(t.fill_window(4), vec![0, 1, 2, 3]);
        assert!(t.answered(0));
        t.connection_lost();
        assert_eq!(t.fill_window(4), vec![1, 2, 3, 4]);
    }
}
