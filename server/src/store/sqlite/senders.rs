//! Which message numbers each sender has had accepted: read from the
//! database on first use, kept in memory, written back with each batch.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension, Transaction};

use super::super::accepted::Accepted;
use super::super::StoreError;

/// Senders whose records are kept in memory at most.
const MAX_CACHED: usize = 4096;

/// The accepted numbers of senders seen since the store opened, and which
/// of them the current batch changed.
#[derive(Default)]
pub(super) struct Senders {
    known: HashMap<u64, Accepted>,
    changed: HashSet<u64>,
}

impl Senders {
    /// Whether `sender` has had `number` accepted, reading the sender's
    /// record on first use.
    pub(super) fn contains(
        &mut self,
        tx: &Transaction<'_>,
        sender: u64,
        number: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.get(tx, sender)?.contains(number))
    }

    fn get(&mut self, tx: &Transaction<'_>, sender: u64) -> Result<&mut Accepted, StoreError> {
        match self.known.entry(sender) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let stored: Option<Vec<u8>> = tx
                    .prepare_cached("SELECT numbers FROM senders WHERE sender = ?1")?
                    .query_row([sender as i64], |r| r.get(0))
                    .optional()?;
                let accepted = match stored {
                    None => Accepted::default(),
                    Some(bytes) => Accepted::from_bytes(&bytes).ok_or(StoreError::Damaged(
                        "a sender's record of accepted message numbers",
                    ))?,
                };
                Ok(e.insert(accepted))
            }
        }
    }

    /// Records that `number` from `sender` is stored. [`Senders::contains`]
    /// has read the sender's record earlier in the same batch.
    pub(super) fn accept(&mut self, sender: u64, number: u64) {
        if let Some(accepted) = self.known.get_mut(&sender) {
            accepted.insert(number);
            self.changed.insert(sender);
        }
    }

    /// Writes the records this batch changed.
    pub(super) fn save(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO senders (sender, numbers) VALUES (?1, ?2)
             ON CONFLICT (sender) DO UPDATE SET numbers = excluded.numbers",
        )?;
        for sender in &self.changed {
            if let Some(accepted) = self.known.get(sender) {
                upsert.execute(params![*sender as i64, accepted.to_bytes()])?;
            }
        }
        Ok(())
    }

    /// After a batch: if it did not commit, what it changed is forgotten
    /// and read again from the database when next needed.
    pub(super) fn end_batch(&mut self, committed: bool) {
        if !committed {
            for sender in &self.changed {
                self.known.remove(sender);
            }
        }
        self.changed.clear();
        // Every record is saved now: past the cap, memory is given back and
        // records are read again on use, so the cache does not grow with
        // every sender ever seen.
        if self.known.len() > MAX_CACHED {
            self.known = HashMap::new();
        }
    }
}
