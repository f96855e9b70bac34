//! The message numbers a sender has had accepted, for deduplication.
//!
//! Clients number their messages in increasing order (the client core
//! counts up by one), so the numbers a sender has had accepted form a few
//! runs: one per gap left by a refused message. Keeping them as ranges
//! makes the record one small row per sender instead of one row per
//! message forever, and updating it touches one page per batch instead of
//! one page per sender.
//!
//! The record holds at most [`MAX_RANGES`] ranges. Past that, the two
//! oldest merge: the numbers in the gap between them, refused long ago and
//! never accepted, would then be answered as duplicates if a client sent
//! them again. No accepted number is ever forgotten, so a resent message is
//! never stored twice.

/// Ranges kept per sender before the oldest gap is closed.
pub(super) const MAX_RANGES: usize = 64;

/// Accepted numbers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Accepted {
    ranges: Vec<(u64, u64)>,
}

impl Accepted {
    /// Whether `n` was accepted before (or lies in a closed gap).
    pub(super) fn contains(&self, n: u64) -> bool {
        // The common case: a new number just above the newest range.
        if let Some(&(_, hi)) = self.ranges.last() {
            if n > hi {
                return false;
            }
        }
        self.find(n).is_ok()
    }

    /// The range holding `n`, or where a range for it would go.
    fn find(&self, n: u64) -> Result<usize, usize> {
        self.ranges.binary_search_by(|&(lo, hi)| {
            if hi < n {
                std::cmp::Ordering::Less
            } else if lo > n {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
    }

    /// Records `n`; false if it was there already.
    pub(super) fn insert(&mut self, n: u64) -> bool {
        let at = match self.find(n) {
            Ok(_) => return false,
            Err(at) => at,
        };
        let joins_left = at > 0 && self.ranges[at - 1].1.checked_add(1) == Some(n);
        let joins_right = at < self.ranges.len() && n.checked_add(1) == Some(self.ranges[at].0);
        match (joins_left, joins_right) {
            (true, true) => {
                self.ranges[at - 1].1 = self.ranges[at].1;
                self.ranges.remove(at);
            }
            (true, false) => self.ranges[at - 1].1 = n,
            (false, true) => self.ranges[at].0 = n,
            (false, false) => self.ranges.insert(at, (n, n)),
        }
        if self.ranges.len() > MAX_RANGES {
            let (_, hi) = self.ranges.remove(1);
            self.ranges[0].1 = hi;
        }
        true
    }

    /// The record as stored: each range as two big-endian u64s.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ranges.len() * 16);
        for &(lo, hi) in &self.ranges {
            out.extend_from_slice(&lo.to_be_bytes());
            out.extend_from_slice(&hi.to_be_bytes());
        }
        out
    }

    /// Reads a record written by [`Accepted::to_bytes`]; `None` if it is
    /// not one.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() % 16 != 0 {
            return None;
        }
        let word = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
        let mut ranges = Vec::with_capacity(bytes.len() / 16);
        for pair in bytes.chunks_exact(16) {
            let (lo, hi) = (word(&pair[..8])?, word(&pair[8..])?);
            let after_previous = ranges.last().is_none_or(|&(_, prev_hi): &(u64, u64)| {
                prev_hi.checked_add(1).is_some_and(|next| next < lo)
            });
            if lo > hi || !after_previous {
                return None;
            }
            ranges.push((lo, hi));
        }
        Some(Self { ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn counting_up_is_one_range() {
        let mut a = Accepted::default();
        for n in 100..1100 {
            assert!(a.insert(n));
        }
        assert!(!a.insert(500));
        assert!(!a.contains(99) && a.contains(100) && a.contains(1099) && !a.contains(1100));
        assert_eq!(a.to_bytes().len(), 16);
    }

    #[test]
    fn gaps_stay_open_until_too_many() {
        let mut a = Accepted::default();
        // Every other number: each accepted one is its own range.
        for i in 0..=MAX_RANGES as u64 {
            a.insert(2 * i);
        }
        assert_eq!(a.ranges.len(), MAX_RANGES);
        // The oldest gap (1) closed; the newer ones are still open.
        assert!(a.contains(1));
        assert!(!a.contains(3));
        assert!(a.insert(3));
    }

    #[test]
    fn a_damaged_record_is_refused() {
        assert_eq!(Accepted::from_bytes(&[0; 15]), None);
        let mut bad = Vec::new();
        bad.extend_from_slice(&5u64.to_be_bytes());
        bad.extend_from_slice(&4u64.to_be_bytes());
        assert_eq!(Accepted::from_bytes(&bad), None);
    }

    proptest! {
        /// Exact while the gaps fit; never forgets an accepted number; and
        /// survives a round trip through its stored form.
        #[test]
        fn behaves_as_a_set(numbers in proptest::collection::vec(
            prop_oneof![0u64..200, Just(u64::MAX), Just(u64::MAX - 1), Just(0u64)], 0..300)
        ) {
            let mut a = Accepted::default();
            let mut model = BTreeSet::new();
            let mut merged = false;
            for n in numbers {
                let new = a.insert(n);
                let model_new = model.insert(n);
                if !merged {
                    prop_assert_eq!(new, model_new);
                }
                merged |= a.ranges.len() == MAX_RANGES;
                for &m in &model {
                    prop_assert!(a.contains(m));
                }
                prop_assert!(a.ranges.len() <= MAX_RANGES);
                prop_assert_eq!(Accepted::from_bytes(&a.to_bytes()), Some(a.clone()));
            }
        }
    }
}
