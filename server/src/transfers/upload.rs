//! An upload in progress: its partial body, which chunks have arrived, the
//! blocks of chunks not yet written, and its share of the quota.
//!
//! Chunks are 256 bytes; writing each with its own system call was most of
//! an upload's cost. They are gathered into 64 KiB blocks instead, and a
//! block is written once all its chunks are in, or when more than a few
//! blocks are open at once (a client sending far out of order), or at the
//! end. Acknowledged chunks not yet on disk are no weaker than those on
//! disk: a partial upload never survives a restart, and a file is listed
//! only after its body is synced and renamed.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use proto::limits::{chunk_count, chunk_len, CHUNK_SIZE};
use tokio::sync::OwnedSemaphorePermit;

use super::chunks::ChunkSet;
use super::quota::Reservation;

/// Chunks gathered into one write.
const CHUNKS_PER_BLOCK: u32 = 256;
const BLOCK: u64 = CHUNKS_PER_BLOCK as u64 * CHUNK_SIZE as u64;
/// Blocks gathered at once, at most, per upload (192 KiB of memory).
const MAX_OPEN_BLOCKS: usize = 3;

/// Bytes to write at an offset of the partial body.
pub(crate) type Write = (u64, Vec<u8>);

/// The chunks of one block that have arrived and are not yet written.
#[derive(Debug)]
struct Block {
    data: Vec<u8>,
    present: ChunkSet,
    count: u32,
}

/// An upload in progress, owned by its session's transfers.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) file: u64,
    pub(crate) size: u32,
    pub(crate) part: Arc<File>,
    received: ChunkSet,
    remaining: u32,
    blocks: BTreeMap<u32, Block>,
    /// Dropped with the upload: returns the quota, removes the body.
    pub(crate) reservation: Option<Reservation>,
    _permit: OwnedSemaphorePermit,
}

/// What a chunk did to the upload.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// A chunk already received: acknowledge it again.
    Repeat,
    /// New; these writes (maybe none) must reach the body before it is
    /// acknowledged. `last`: every chunk is in, sync and commit the file.
    New { writes: Vec<Write>, last: bool },
}

impl Upload {
    pub(crate) fn new(
        file: u64,
        size: u32,
        part: File,
        reservation: Reservation,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let chunks = chunk_count(size);
        Self {
            file,
            size,
            part: Arc::new(part),
            received: ChunkSet::new(chunks),
            remaining: chunks,
            blocks: BTreeMap::new(),
            reservation: Some(reservation),
            _permit: permit,
        }
    }

    /// Takes chunk `chunk`; `Err` says why it does not fit the file.
    pub(crate) fn accept(&mut self, chunk: u32, data: &[u8]) -> Result<Accepted, String> {
        if chunk_len(self.size, chunk) != Some(data.len()) {
            return Err(format!(
                "chunk {chunk} of a {}-byte file must hold {} bytes, not {}",
                self.size,
                chunk_len(self.size, chunk).map_or_else(|| "no".to_string(), |n| n.to_string()),
                data.len()
            ));
        }
        if !self.received.insert(chunk) {
            return Ok(Accepted::Repeat);
        }
        self.remaining -= 1;
        let index = chunk / CHUNKS_PER_BLOCK;
        let size = u64::from(self.size);
        let block = self.blocks.entry(index).or_insert_with(|| {
            let start = u64::from(index) * BLOCK;
            Block {
                data: vec![0; (size - start).min(BLOCK) as usize],
                present: ChunkSet::new(CHUNKS_PER_BLOCK),
                count: 0,
            }
        });
        let within = chunk % CHUNKS_PER_BLOCK;
        let at = within as usize * CHUNK_SIZE;
        block.data[at..at + data.len()].copy_from_slice(data);
        block.present.insert(within);
        block.count += 1;
        let total = chunk_count(self.size);
        let in_block = (total - index * CHUNKS_PER_BLOCK).min(CHUNKS_PER_BLOCK);
        let mut writes = Vec::new();
        if block.count == in_block {
            if let Some(full) = self.blocks.remove(&index) {
                writes.push((u64::from(index) * BLOCK, full.data));
            }
        }
        let last = self.remaining == 0;
        while self.blocks.len() > MAX_OPEN_BLOCKS || (last && !self.blocks.is_empty()) {
            if let Some((index, block)) = self.blocks.pop_first() {
                writes.extend(runs(index, block));
            }
        }
        Ok(Accepted::New { writes, last })
    }
}

/// The runs of consecutive chunks present in a block, as writes.
fn runs(index: u32, block: Block) -> Vec<Write> {
    let base = u64::from(index) * BLOCK;
    let chunks = block.data.len().div_ceil(CHUNK_SIZE) as u32;
    let mut out = Vec::new();
    let mut c = 0;
    while c < chunks {
        if !block.present.contains(c) {
            c += 1;
            continue;
        }
        let start = c;
        while c < chunks && block.present.contains(c) {
            c += 1;
        }
        let from = start as usize * CHUNK_SIZE;
        let to = (c as usize * CHUNK_SIZE).min(block.data.len());
        out.push((base + from as u64, block.data[from..to].to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc as StdArc;

    fn upload(size: u32) -> Upload {
        let dir = tempfile::tempdir().unwrap();
        let part = tempfile::tempfile_in(dir.path()).unwrap();
        let quota = super::super::quota::Quota::new(0, u64::MAX, u64::MAX, 0);
        let reservation = quota.reserve(1, u64::from(size)).unwrap();
        let permit = StdArc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        Upload::new(1, size, part, reservation, permit)
    }

    fn chunk_bytes(chunk: u32, len: usize) -> Vec<u8> {
        (0..len).map(|i| (chunk as usize * 7 + i) as u8).collect()
    }

    proptest! {
        /// Whatever the order and repeats of chunks, the writes rebuild the
        /// file exactly, the last chunk is reported once, and at most a few
        /// blocks are held in memory.
        #[test]
        fn writes_rebuild_the_file(size in 1u32..300_000, seed in any::<u64>(), repeats in 0usize..50) {
            let mut up = upload(size);
            let chunks = chunk_count(size);
            let mut order: Vec<u32> = (0..chunks).collect();
            // A cheap shuffle within windows of 300 chunks, like a windowed
            // client whose answers are reordered.
            let mut x = seed | 1;
            for w in order.chunks_mut(300) {
                for i in (1..w.len()).rev() {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    w.swap(i, (x % (i as u64 + 1)) as usize);
                }
            }
            for r in 0..repeats.min(order.len()) {
                let c = order[r];
                order.push(c);
            }
            let mut file = vec![0u8; size as usize];
            let mut lasts = 0;
            for c in order {
                let len = chunk_len(size, c).unwrap();
                match up.accept(c, &chunk_bytes(c, len)).unwrap() {
                    Accepted::Repeat => {}
                    Accepted::New { writes, last } => {
                        for (off, data) in writes {
                            file[off as usize..off as usize + data.len()].copy_from_slice(&data);
                        }
                        lasts += usize::from(last);
                    }
                }
                prop_assert!(up.blocks.len() <= MAX_OPEN_BLOCKS);
            }
            prop_assert_eq!(lasts, 1);
            for c in 0..chunks {
                let len = chunk_len(size, c).unwrap();
                let at = c as usize * CHUNK_SIZE;
                prop_assert_eq!(&file[at..at + len], &chunk_bytes(c, len)[..]);
            }
        }
    }

    #[test]
    fn a_chunk_of_the_wrong_length_is_refused() {
        let mut up = upload(300);
        assert!(up.accept(1, &[0; 45]).is_err());
        assert!(up.accept(2, &[0; 1]).is_err());
        assert!(matches!(
            up.accept(1, &[0; 44]),
            Ok(Accepted::New { last: false, .. })
        ));
    }
}
