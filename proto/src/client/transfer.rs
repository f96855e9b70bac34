//! Windowed (pipelined) chunk transfers, in both directions.
//!
//! A transfer keeps up to `window` chunk requests in flight and sends the
//! next one as each answer arrives, so throughput is bounded by bandwidth
//! rather than by round trips.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use crate::limits::{chunk_count, chunk_len, CHUNK_SIZE};

use super::event::TransferId;

/// Which way the bytes move.
#[derive(Debug, Clone)]
pub(crate) enum Direction {
    /// A file's name and where its bytes come from.
    Upload { name: String, data: UploadData },
    /// Only the file number; the size comes with FILE DATA RESPONSE.
    Download,
}

/// Where an upload's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum UploadData {
    /// The whole file's bytes, held until every chunk is acknowledged.
    Whole(Bytes),
    /// Bytes the shell supplies as they are wanted (read from a file in
    /// slices): `buffer` holds the file from offset `start`, from the
    /// first chunk not yet answered; bytes up to `asked` have been asked
    /// for.
    Supplied {
        start: u64,
        buffer: BytesMut,
        asked: u64,
    },
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
        let data = UploadData::Whole(data);
        Self::new(id, Direction::Upload { name, data }, None, size)
    }

    /// An upload of `size` bytes that the shell supplies as they are
    /// wanted (see [`Transfer::wants`]).
    pub(crate) fn supplied_upload(id: TransferId, name: String, size: u32) -> Self {
        let data = UploadData::Supplied {
            start: 0,
            buffer: BytesMut::new(),
            asked: 0,
        };
        Self::new(id, Direction::Upload { name, data }, None, Some(size))
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
            if !self.has_bytes_of(self.next) {
                break; // asked for, not supplied yet
            }
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
            self.drop_answered_bytes();
            true
        } else {
            false
        }
    }

    /// A supplied upload keeps no byte before the first chunk that may
    /// still be sent (again, after a lost connection).
    fn drop_answered_bytes(&mut self) {
        let needed = self
            .in_flight
            .first()
            .copied()
            .unwrap_or(self.next)
            .min(self.next);
        if let Direction::Upload {
            data: UploadData::Supplied { start, buffer, .. },
            ..
        } = &mut self.direction
        {
            let keep_from = u64::from(needed) * CHUNK_SIZE as u64;
            let drop = keep_from.saturating_sub(*start).min(buffer.len() as u64);
            let _ = buffer.split_to(drop as usize);
            *start += drop;
        }
    }

    /// Whether the bytes of chunk `chunk` are at hand (always, but for a
    /// supplied upload).
    fn has_bytes_of(&self, chunk: u32) -> bool {
        match &self.direction {
            Direction::Upload {
                data: UploadData::Supplied { start, buffer, .. },
                ..
            } => {
                let Some(len) = self.size.and_then(|s| chunk_len(s, chunk)) else {
                    return false;
                };
                let from = u64::from(chunk) * CHUNK_SIZE as u64;
                from >= *start && from + len as u64 <= *start + buffer.len() as u64
            }
            _ => true,
        }
    }

    /// The bytes of upload chunk `chunk`, if at hand.
    pub(crate) fn upload_chunk(&self, chunk: u32) -> Option<Bytes> {
        let Direction::Upload { data, .. } = &self.direction else {
            return None;
        };
        let len = chunk_len(self.size?, chunk)?;
        let from = chunk as usize * CHUNK_SIZE;
        match data {
            UploadData::Whole(data) => Some(data.slice(from..from + len)),
            UploadData::Supplied { start, buffer, .. } => {
                let at = (from as u64).checked_sub(*start)? as usize;
                buffer.get(at..at + len).map(Bytes::copy_from_slice)
            }
        }
    }

    /// The next bytes a supplied upload wants, as (offset, length), once
    /// what was asked before has arrived: enough to keep `window` chunks in
    /// flight twice over, so reading stays ahead of sending without the
    /// whole file in memory.
    pub(crate) fn wants(&mut self, window: u32) -> Option<(u64, u64)> {
        let size = u64::from(self.size?);
        let Direction::Upload {
            data:
                UploadData::Supplied {
                    start,
                    buffer,
                    asked,
                },
            ..
        } = &mut self.direction
        else {
            return None;
        };
        let have = *start + buffer.len() as u64;
        let ahead = u64::from(window.max(1)) * CHUNK_SIZE as u64 * 2;
        // One request at a time, and a new one only once what is held (in
        // flight or not yet sent) is down to half of what is kept ahead.
        if *asked != have || have >= size || have - *start > ahead / 2 {
            return None;
        }
        let target = size.min(*start + ahead);
        if target <= have {
            return None;
        }
        *asked = target;
        Some((have, target - have))
    }

    /// Takes supplied bytes at `offset`; false (and nothing kept) unless
    /// they are the next ones asked for.
    pub(crate) fn supply(&mut self, offset: u64, data: &[u8]) -> bool {
        let Direction::Upload {
            data:
                UploadData::Supplied {
                    start,
                    buffer,
                    asked,
                },
            ..
        } = &mut self.direction
        else {
            return false;
        };
        let have = *start + buffer.len() as u64;
        if offset != have || have + data.len() as u64 > *asked {
            return false;
        }
        buffer.extend_from_slice(data);
        true
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
        if let Direction::Upload { data, .. } = &mut self.direction {
            self.file = None;
            if let UploadData::Supplied { .. } = data {
                // The bytes from the start are wanted again.
                *data = UploadData::Supplied {
                    start: 0,
                    buffer: BytesMut::new(),
                    asked: 0,
                };
            }
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
    fn a_supplied_upload_asks_ahead_sends_what_it_has_and_keeps_only_what_may_be_resent() {
        let size = 10 * CHUNK_SIZE as u32 + 5;
        let mut t = Transfer::supplied_upload(1, "f".into(), size);
        let window = 2;
        let ahead = 2 * 2 * CHUNK_SIZE as u64;
        assert_eq!(t.wants(window), Some((0, ahead)));
        assert_eq!(t.wants(window), None, "one request at a time");
        t.transaction = Some(9);
        assert!(t.fill_window(window).is_empty(), "nothing supplied yet");
        assert!(!t.supply(1, &[0; 3]), "out of order");
        assert!(
            !t.supply(0, &vec![0; ahead as usize + 1]),
            "more than asked"
        );
        let file: Vec<u8> = (0..size).map(|i| i as u8).collect();
        assert!(t.supply(0, &file[..300]));
        assert_eq!(t.fill_window(window), vec![0], "only chunk 0 is whole");
        assert!(t.supply(300, &file[300..ahead as usize]));
        assert_eq!(t.fill_window(window), vec![1]);
        assert_eq!(
            t.upload_chunk(1).as_deref(),
            Some(&file[CHUNK_SIZE..2 * CHUNK_SIZE])
        );
        assert!(t.answered(0));
        assert_eq!(t.fill_window(window), vec![2]);
        // Answered bytes are dropped; what is in flight is kept.
        assert_eq!(t.upload_chunk(0), None);
        assert!(t.upload_chunk(1).is_some());
        // The buffer ran down to what is in flight: more is wanted.
        assert!(t.answered(1));
        assert!(t.answered(2));
        assert_eq!(t.wants(window), Some((ahead, 3 * CHUNK_SIZE as u64)));
    }

    #[test]
    fn a_supplied_upload_resends_from_its_buffer_and_starts_over_when_the_session_is_lost() {
        let size = 3 * CHUNK_SIZE as u32;
        let mut t = Transfer::supplied_upload(1, "f".into(), size);
        let (offset, len) = t.wants(4).unwrap();
        assert_eq!((offset, len), (0, u64::from(size)), "a small file at once");
        assert!(t.supply(0, &vec![1; size as usize]));
        t.transaction = Some(3);
        assert_eq!(t.fill_window(4), vec![0, 1, 2]);
        assert!(t.answered(0));
        t.connection_lost();
        assert_eq!(t.fill_window(4), vec![1, 2], "resent from the buffer");
        t.restart();
        t.transaction = Some(4);
        assert!(t.fill_window(4).is_empty());
        assert_eq!(t.wants(4), Some((0, u64::from(size))), "from the start");
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
