//! The broadcasts a session has been sent but not acknowledged, kept for
//! redelivery when its client comes back.
//!
//! Broadcasts reach every session in (almost) increasing delivery order and
//! are acknowledged in (almost) the same order, so a sorted deque serves
//! both ends in constant time: a new broadcast goes on the back, an
//! acknowledgement usually takes the front. A B-tree did the same job at
//! several cache misses per delivery, which at a thousand receivers per
//! broadcast was the server's largest cost.

use std::collections::VecDeque;

use bytes::Bytes;

/// Unacknowledged broadcasts of one session, oldest first, at most `keep`.
#[derive(Debug, Default)]
pub(crate) struct PendingBroadcasts {
    // Sorted by delivery number; empty and unallocated while nothing is
    // pending, so an idle session pays nothing for it.
    queue: VecDeque<(u64, Bytes)>,
}

impl PendingBroadcasts {
    /// Records `delivery`, dropping the oldest beyond `keep`. A delivery
    /// already recorded is kept once.
    pub(crate) fn insert(&mut self, delivery: u64, bytes: Bytes, keep: usize) {
        match self.queue.back() {
            Some(&(last, _)) if last >= delivery => {
                // Two senders' broadcasts can reach a session out of order.
                if let Err(at) = self.queue.binary_search_by_key(&delivery, |e| e.0) {
                    self.queue.insert(at, (delivery, bytes));
                }
            }
            _ => self.queue.push_back((delivery, bytes)),
        }
        while self.queue.len() > keep {
            self.queue.pop_front();
        }
    }

    /// Forgets `delivery`; unknown or already forgotten numbers are ignored.
    pub(crate) fn remove(&mut self, delivery: u64) {
        match self.queue.front() {
            Some(&(first, _)) if first == delivery => {
                self.queue.pop_front();
            }
            Some(_) => {
                if let Ok(at) = self.queue.binary_search_by_key(&delivery, |e| e.0) {
                    self.queue.remove(at);
                }
            }
            None => {}
        }
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
    }

    /// The encoded packets still pending, oldest first.
    pub(crate) fn packets(&self) -> Vec<Bytes> {
        self.queue.iter().map(|(_, b)| b.clone()).collect()
    }

    /// How many are pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn b(n: u64) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    #[test]
    fn keeps_the_newest_in_order() {
        let mut p = PendingBroadcasts::default();
        for d in [1, 2, 4, 3, 5] {
            p.insert(d, b(d), 3);
        }
        assert_eq!(p.packets(), vec![b(3), b(4), b(5)]);
        p.remove(4);
        p.remove(99);
        assert_eq!(p.packets(), vec![b(3), b(5)]);
        p.remove(3);
        p.remove(5);
        assert_eq!(p.len(), 0);
    }

    proptest! {
        /// Behaves as the ordered map it replaced, capped at `keep`.
        #[test]
        fn matches_an_ordered_map(
            keep in 1usize..20,
            ops in proptest::collection::vec((any::<bool>(), 0u64..40), 0..200),
        ) {
            let mut p = PendingBroadcasts::default();
            let mut model = BTreeMap::new();
            for (insert, d) in ops {
                if insert {
                    p.insert(d, b(d), keep);
                    model.insert(d, b(d));
                    while model.len() > keep {
                        model.pop_first();
                    }
                } else {
                    p.remove(d);
                    model.remove(&d);
                }
                prop_assert_eq!(p.packets(), model.values().cloned().collect::<Vec<_>>());
            }
        }
    }
}
