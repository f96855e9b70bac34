//! Which chunks of a file a transfer has seen: one bit per chunk.

/// A set of chunk numbers below a fixed count.
#[derive(Debug)]
pub(crate) struct ChunkSet {
    words: Vec<u64>,
    len: u32,
}

impl ChunkSet {
    /// An empty set for a file of `chunks` chunks (2 MiB for the largest
    /// file the format allows, 0.05 % of its size).
    pub(crate) fn new(chunks: u32) -> Self {
        Self {
            words: vec![0; chunks.div_ceil(64) as usize],
            len: chunks,
        }
    }

    /// Adds `chunk`; true if it was not in the set (and is in range).
    pub(crate) fn insert(&mut self, chunk: u32) -> bool {
        if chunk >= self.len {
            return false;
        }
        let (word, bit) = ((chunk / 64) as usize, 1u64 << (chunk % 64));
        match self.words.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }

    /// Whether `chunk` is in the set.
    pub(crate) fn contains(&self, chunk: u32) -> bool {
        let (word, bit) = ((chunk / 64) as usize, 1u64 << (chunk % 64));
        chunk < self.len && self.words.get(word).is_some_and(|w| w & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_as_a_set(chunks in 0u32..500, ops in proptest::collection::vec(0u32..600, 0..200)) {
            let mut set = ChunkSet::new(chunks);
            let mut model = std::collections::BTreeSet::new();
            for c in ops {
                let fresh = c < chunks && model.insert(c);
                prop_assert_eq!(set.insert(c), fresh);
                prop_assert_eq!(set.contains(c), c < chunks && model.contains(&c));
            }
        }
    }
}
