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

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

#[derive(Debug)]
struct Entry {
    number: u64,
    sender: u64,
    bytes: Bytes,
}

/// The most recent broadcasts, in the order they reached this server, at
/// most `keep`.
///
/// # Numbers and positions
/// A broadcast's *number* (its delivery number, from one counter for the
/// whole deployment: with PostgreSQL a sequence every server draws from)
/// is what clients see and acknowledge, and it names the broadcast on
/// every server. It is not the order broadcasts arrive in: with several
/// servers, one server's higher numbers can reach a third before
/// another's lower ones, and even in one process two senders' batches can
/// be fanned out in either order. So the log orders by *position*: the
/// arrival order on this server, counted from 0 with no gaps. A session
/// owes what arrived after it started ([`Log::floor_for_new_session`])
/// whatever its number, and [`Owed`] is kept in positions; an
/// acknowledgement is turned from number to position here. Positions are
/// local to one server and never leave it.
#[derive(Debug)]
pub(crate) struct Log {
    /// In arrival order: entry `i` is at position `first + i`.
    entries: VecDeque<Entry>,
    /// The position of the oldest entry kept.
    first: u64,
    /// Number → position, for the entries kept.
    positions: HashMap<u64, u64>,
    /// Numbers of broadcasts that left the log, the most recent
    /// [`FORGOTTEN`]` × keep`, oldest first: one read again from the
    /// store (a catch-up) is recognised as old, not fanned out again.
    forgotten: VecDeque<u64>,
    forgotten_set: HashSet<u64>,
    keep: usize,
}

/// How many times the log's size of numbers it remembers after their
/// broadcasts left it.
const FORGOTTEN: usize = 4;

impl Log {
    /// A log keeping the `keep` most recent broadcasts.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            first: 0,
            positions: HashMap::new(),
            forgotten: VecDeque::new(),
            forgotten_set: HashSet::new(),
            keep: keep.max(1),
        }
    }

    /// Records a broadcast from `sender`, as the encoded packet delivered,
    /// and returns its position; `None` if a broadcast of that number is
    /// logged already, or was not long ago (the same one, arriving twice).
    pub(crate) fn insert(&mut self, number: u64, sender: u64, bytes: Bytes) -> Option<u64> {
        if self.positions.contains_key(&number) || self.forgotten_set.contains(&number) {
            return None;
        }
        let position = self.next();
        self.entries.push_back(Entry {
            number,
            sender,
            bytes,
        });
        self.positions.insert(number, position);
        while self.entries.len() > self.keep {
            if let Some(old) = self.entries.pop_front() {
                self.positions.remove(&old.number);
                self.first += 1;
                self.forget(old.number);
            }
        }
        Some(position)
    }

    fn forget(&mut self, number: u64) {
        if self.forgotten_set.insert(number) {
            self.forgotten.push_back(number);
        }
        while self.forgotten.len() > self.keep.saturating_mul(FORGOTTEN) {
            if let Some(old) = self.forgotten.pop_front() {
                self.forgotten_set.remove(&old);
            }
        }
    }

    /// Where a session that starts now stands: it owes nothing logged so far.
    pub(crate) fn floor_for_new_session(&self) -> u64 {
        self.next()
    }

    /// The position of the oldest broadcast kept.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// One past the position of the latest arrival.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The position of broadcast `number`, while it is kept.
    pub(crate) fn position(&self, number: u64) -> Option<u64> {
        self.positions.get(&number).copied()
    }

    /// The broadcasts `owed` has not acknowledged, as (number, packet), in
    /// arrival order, skipping `user`'s own.
    pub(crate) fn owed(&self, owed: &Owed, user: u64) -> Vec<(u64, Bytes)> {
        let from = owed.floor.saturating_sub(self.first);
        let from = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        self.entries
            .range(from..)
            .zip(self.first + from as u64..)
            .filter(|(e, at)| e.sender != user && owed.acked.binary_search(at).is_err())
            .map(|(e, _)| (e.number, e.bytes.clone()))
            .collect()
    }
}

/// Where one session stands in the [`Log`], in positions: every broadcast
/// below `floor` is acknowledged (or its own, or arrived before the
/// session began); above it, `acked` holds the positions acknowledged out
/// of order. A client that acknowledges as it reads keeps `acked` empty
/// (or nearly: live fan-outs may pass each other), and the usual
/// acknowledgement touches only its own session.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    floor: u64,
    acked: Vec<u64>,
}

impl Owed {
    /// A session owing everything from position `floor` on.
    pub(crate) fn new(floor: u64) -> Self {
        Self {
            floor,
            acked: Vec::new(),
        }
    }

    /// The broadcast at `position` needs no delivery to this session any
    /// more: its client acknowledged it, or the session sent it. `first`
    /// and `next` are the log's oldest position kept and one past its
    /// latest ([`Log::first`], [`Log::next`]): nothing below the first is
    /// owed any more, and later ones are ignored. Returns true when
    /// out-of-order positions have piled up past `limit` and
    /// [`Owed::tidy`] should run.
    pub(crate) fn done(&mut self, position: u64, first: u64, next: u64, limit: usize) -> bool {
        if self.floor < first {
            self.floor = first;
            let below = self.acked.partition_point(|&a| a < first);
            self.acked.drain(..below);
            self.skip_acknowledged();
        }
        if position < self.floor || position >= next {
            return false;
        }
        if position == self.floor {
            self.floor += 1;
            self.skip_acknowledged();
        } else if let Err(at) = self.acked.binary_search(&position) {
            self.acked.insert(at, position);
        }
        self.acked.len() > limit
    }

    /// Moves the floor past the acknowledged positions right above it.
    fn skip_acknowledged(&mut self) {
        let run = self
            .acked
            .iter()
            .zip(self.floor..)
            .take_while(|(a, f)| **a == *f)
            .count();
        self.floor += run as u64;
        self.acked.drain(..run);
    }

    /// Moves the floor past positions the log no longer keeps and forgets
    /// acknowledgements of them, so `acked` never holds more than the log
    /// does.
    pub(crate) fn tidy(&mut self, log: &Log) {
        self.floor = self.floor.max(log.first);
        let (floor, next) = (self.floor, log.next());
        self.acked.retain(|&n| n >= floor && n < next);
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

    fn b(n: u64) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    fn packets(owed: Vec<(u64, Bytes)>) -> Vec<Bytes> {
        owed.into_iter().map(|(_, b)| b).collect()
    }

    /// Acknowledges broadcast `n` as the hub does: by its position.
    fn ack(owed: &mut Owed, log: &Log, n: u64, keep: usize) {
        if let Some(at) = log.position(n) {
            if owed.done(at, log.first(), log.next(), keep) {
                owed.tidy(log);
            }
        }
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
                ack(&mut owed, &log, n, 3);
            }
        }
        // Kept, in arrival order: 4, 3, 5; user 7 sent 4.
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(3), b(5)]);
        ack(&mut owed, &log, 5, 3);
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(3)]);
        ack(&mut owed, &log, 2, 3);
        ack(&mut owed, &log, 3, 3);
        assert!(log.owed(&owed, 7).is_empty());
        assert!(
            owed.acked.is_empty(),
            "in-order acknowledgements keep nothing"
        );
        ack(&mut owed, &log, 1 << 40, 3);
        assert!(owed.acked.is_empty(), "a number never logged is ignored");
    }

    /// Another server's broadcast can arrive with a lower number than one
    /// logged before a session began: it came after, so it is owed.
    #[test]
    fn a_lower_number_arriving_after_a_session_began_is_owed_to_it() {
        let mut log = Log::new(10);
        log.insert(50, 9, b(50));
        let owed = Owed::new(log.floor_for_new_session());
        log.insert(20, 8, b(20));
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(20)]);
        assert_eq!(log.insert(20, 8, b(20)), None, "the same broadcast twice");
        assert_eq!(packets(log.owed(&owed, 7)), vec![b(20)]);
    }

    /// A broadcast that left the log, read again from the store by a
    /// catch-up, is not logged (and so not fanned out) again, while the
    /// log remembers its number.
    #[test]
    fn a_broadcast_that_left_the_log_is_not_taken_again() {
        let mut log = Log::new(2);
        for n in 1..=3 {
            assert!(log.insert(n, 9, b(n)).is_some());
        }
        assert_eq!(log.position(1), None, "1 left the log");
        assert_eq!(log.insert(1, 9, b(1)), None, "but is remembered");
        // Remembered are the last 4 × 2 numbers to leave.
        for n in 4..=12 {
            log.insert(n, 9, b(n));
        }
        assert!(log.insert(1, 9, b(1)).is_some(), "long forgotten");
    }

    proptest! {
        /// Owes exactly what a per-session queue of the last `keep`
        /// broadcasts to arrive, minus acknowledgements, would hold, in
        /// arrival order whatever the numbers, and keeps at most `keep`
        /// positions.
        #[test]
        fn matches_a_queue_per_session(
            keep in 1usize..20,
            ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u64..3), 0..200),
        ) {
            let me = 0;
            let mut log = Log::new(keep);
            let mut owed = Owed::new(0);
            let mut kept: std::collections::VecDeque<(u64, u64)> = Default::default();
            let mut acked = std::collections::BTreeSet::new();
            let mut ever = std::collections::BTreeSet::new();
            for (insert, n, sender) in ops {
                if insert {
                    if !ever.insert(n) { continue; }
                    prop_assert!(log.insert(n, sender, b(n)).is_some());
                    kept.push_back((n, sender));
                    while kept.len() > keep { kept.pop_front(); }
                    if sender == me {
                        ack(&mut owed, &log, n, keep);
                    }
                } else if kept.iter().any(|(k, _)| *k == n) {
                    // A client acknowledges only what it was sent.
                    ack(&mut owed, &log, n, keep);
                    acked.insert(n);
                }
                let model: Vec<Bytes> = kept
                    .iter()
                    .filter(|(n, s)| *s != me && !acked.contains(n))
                    .map(|(n, _)| b(*n))
                    .collect();
                prop_assert_eq!(packets(log.owed(&owed, me)), model);
                prop_assert!(owed.acked.len() <= keep + 1);
            }
        }
    }
}
