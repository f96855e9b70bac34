//! How many unread messages, and bytes of them, each recipient has: read
//! from the database on first use, then kept up to date by the writer.

use std::collections::HashMap;

use rusqlite::Transaction;

use super::super::StoreError;

/// Counts of recipients seen since the last failed batch. An entry whose
/// mailbox empties is dropped, so the map holds only non-empty mailboxes.
#[derive(Debug, Default)]
pub(super) struct Mailboxes {
    known: HashMap<u64, (u64, u64)>,
}

impl Mailboxes {
    /// The (messages, bytes) queued for `recipient`.
    pub(super) fn get(
        &mut self,
        tx: &Transaction<'_>,
        recipient: u64,
    ) -> Result<(u64, u64), StoreError> {
        if let Some(c) = self.known.get(&recipient) {
            return Ok(*c);
        }
        let c = tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM queued WHERE recipient = ?1",
            )?
            .query_row([recipient as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?;
        self.known.insert(recipient, c);
        Ok(c)
    }

    /// A message of `bytes` was queued for `recipient` (after [`Mailboxes::get`]).
    pub(super) fn added(&mut self, recipient: u64, bytes: u64) {
        if let Some((n, b)) = self.known.get_mut(&recipient) {
            *n += 1;
            *b += bytes;
        }
    }

    /// A message of `bytes` was removed from `recipient`'s mailbox.
    pub(super) fn removed(&mut self, recipient: u64, bytes: u64) {
        if let Some((n, b)) = self.known.get_mut(&recipient) {
            *n = n.saturating_sub(1);
            *b = b.saturating_sub(bytes);
            if *n == 0 {
                self.known.remove(&recipient);
            }
        }
    }

    /// Forgets every count (a batch failed, or pruning removed messages):
    /// they are read again on next use.
    pub(super) fn clear(&mut self) {
        self.known = HashMap::new();
    }
}
