//! Broadcasts kept for redelivery: one log of the most recent broadcasts
//! for the whole server, and per session only where it stands in it.
//!
//! A session that resumes is sent again the broadcasts it was owed and did
//! not acknowledge. Keeping a queue of them in every session cost memory
//! per broadcast per session, and most of it in sessions whose client was
//! gone: a detached session waits out its timeout while every broadcast
//! lands in its queue. Here a broadcast is kept once, in [`Log`]; a
//! session keeps a floor below which it owes nothing and the few numbers
//! above it acknowledged out of order ([`Owed`]), so a session costs the
//! same however many broadcasts go by.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug)]
struct Entry {
    number: u64,
    sender: u64,
    bytes: Bytes,
}

/// The most recent broadcasts, by delivery number, at most `keep`.
#[derive(Debug)]
pub(crate) struct Log {
    // Sorted by number; broadcasts arrive in (almost) increasing order.
    entries: VecDeque<Entry>,
    keep: usize,
    /// One past the highest number ever logged.
    next: u64,
}

impl Log {
    /// A log keeping the `keep` most recent broadcasts.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            keep: keep.max(1),
            next: 0,
        }
    }

    /// Records a broadcast from `sender`, as the encoded packet delivered.
    pub(crate) fn insert(&mut self, number: u64, sender: u64, bytes: Bytes) {
        let entry = Entry {
            number,
            sender,
            bytes,
        };
        match self.entries.back() {
            Some(last) if last.number >= number => {
                // Two senders' broadcasts can be logged out of order.
                if let Err(at) = self.entries.binary_search_by_key(&number, |e| e.number) {
                    self.entries.insert(at, entry);
                }
            }
            _ => self.entries.push_back(entry),
        }
        self.next = self.next.max(number.saturating_add(1));
        while self.entries.len() > self.keep {
            self.entries.pop_front();
        }
    }

    /// Where a session that starts now stands: it owes nothing logged so far.
    pub(crate) fn floor_for_new_session(&self) -> u64 {
        self.next
    }

    /// One past the highest number logged.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    fn contains(&self, number: u64) -> bool {
        self.entries
            .binary_search_by_key(&number, |e| e.number)
            .is_ok()
    }

    /// The index of the first entry numbered `floor` or more.
    fn position(&self, floor: u64) -> usize {
        self.entries.partition_point(|e| e.number < floor)
    }

    /// The broadcasts `owed` has not acknowledged, as (number, packet),
    /// oldest first, skipping `user`'s own.
    pub(crate) fn owed(&self, owed: &Owed, user: u64) -> Vec<(u64, Bytes)> {
        self.entries
            .range(self.position(owed.floor)..)
            .filter(|e| e.sender != user && owed.acked.binary_search(&e.number).is_err())
            .map(|e| (e.number, e.bytes.clone()))
            .collect()
    }
}

/// Where one session stands in the [`Log`]: every broadcast numbered below
/// `floor` is acknowledged (or its own); above it, `acked` holds the numbers
/// acknowledged out of order. Broadcast numbers come from one counter, so a
/// client that acknowledges as it reads keeps `acked` empty, and the usual
/// acknowledgement touches only its own session.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    floor: u64,
    acked: Vec<u64>,
}

impl Owed {
    /// A session owing everything from `floor` on.
    pub(crate) fn new(floor: u64) -> Self {
        Self {
            floor,
            acked: Vec::new(),
        }
    }

    /// Broadcast `number` needs no delivery to this session any more: its
    /// client acknowledged it, or the session sent it. `next` is one past
    /// the highest number logged; higher numbers are ignored. Returns true
    /// when out-of-order numbers have piled up past `limit` and
    /// [`Owed::tidy`] should run.
    pub(crate) fn done(&mut self, number: u64, next: u64, limit: usize) -> bool {
        if number < self.floor || number >= next {
            return false;
        }
        if number == self.floor {
            self.floor += 1;
            let run = self
                .acked
                .iter()
                .zip(self.floor..)
                .take_while(|(a, f)| **a == *f)
                .count();
            self.floor += run as u64;
            self.acked.drain(..run);
        } else if let Err(at) = self.acked.binary_search(&number) {
            self.acked.insert(at, number);
        }
        self.acked.len() > limit
    }

    /// Moves the floor past numbers that will never be delivered (skipped
    /// by a failed commit, or older than a full log holds) and forgets
    /// acknowledgements of numbers not in the log, so `acked` never holds
    /// more than the log does.
    pub(crate) fn tidy(&mut self, log: &Log) {
        // Below the oldest entry of a full log nothing can be owed: a
        // broadcast numbered there that is logged late is dropped at once.
        if log.entries.len() == log.keep {
            if let Some(oldest) = log.entries.front() {
                self.floor = self.floor.max(oldest.number);
            }
        }
        let floor = self.floor;
        self.acked.retain(|&n| n >= floor && log.contains(n));
        while self.acked.first() == Some(&self.floor) {
            self.acked.remove(0);
            self.floor += 1;
        }
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

    fn packets(owed: Vec<(u64, Bytes)>) -> Vec<Bytes> {
        owed.into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn a_session_owes_what_came_after_it_started_and_was_not_acknowledged() {
        let mut log = Log::new(3);
        log.insert(1, 9, b(1));
        let mut owed = Owed::new(log.floor_for_new_session());
        for n in [2, 4, 3, 5] {
            let sender = if n == 4 { 7 } else { 9 };
            log.insert(n, sender, b(n));
            if sender == 7 {
                owed.done(n, log.next(), 3);
            }
        }
        // Kept: 3, 4, 5; user 7 sent 4.
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(3), b(5)]);
        owed.done(5, log.next(), 3);
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(3)]);
        owed.done(2, log.next(), 3);
        owed.done(3, log.next(), 3);
        assert!(log.owed(&owed, 7).is_empty());
        assert!(
            owed.acked.is_empty(),
            "in-order acknowledgements keep nothing"
        );
        owed.done(1 << 40, log.next(), 3);
        assert!(owed.acked.is_empty(), "a number never logged is ignored");
    }

    proptest! {
        /// Owes exactly what a per-session queue of the last `keep`
        /// broadcasts, minus acknowledgements, would hold, and keeps at
        /// most `keep` numbers.
        #[test]
        fn matches_a_queue_per_session(
            keep in 1usize..20,
            ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u64..3), 0..200),
        ) {
            let me = 0;
            let mut log = Log::new(keep);
            let mut owed = Owed::new(0);
            let mut kept: BTreeMap<u64, (u64, Bytes)> = BTreeMap::new();
            let mut acked = std::collections::BTreeSet::new();
            let mut ever = std::collections::BTreeSet::new();
            for (insert, n, sender) in ops {
                if insert {
                    if !ever.insert(n) { continue; }
                    log.insert(n, sender, b(n));
                    kept.insert(n, (sender, b(n)));
                    while kept.len() > keep { kept.pop_first(); }
                    if sender == me && owed.done(n, log.next, keep) {
                        owed.tidy(&log);
                    }
                } else if kept.contains_key(&n) {
                    // A client acknowledges only what it was sent.
                    if owed.done(n, log.next, keep) {
                        owed.tidy(&log);
                    }
                    acked.insert(n);
                }
                let model: Vec<Bytes> = kept
                    .iter()
                    .filter(|(n, (s, _))| *s != me && !acked.contains(*n))
                    .map(|(_, (_, b))| b.clone())
                    .collect();
                prop_assert_eq!(packets(log.owed(&owed, me)), model);
                prop_assert!(owed.acked.len() <= keep + 1);
            }
        }
    }
}
