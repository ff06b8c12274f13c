//! Changes: the ordered log that keeps every replica of the key table equal to the control plane's.
//!
//! Each change has a sequence number, one more than the previous. A replica at sequence `n`
//! applies change `n + 1`, ignores changes at or below `n` (duplicates are harmless), and refuses
//! anything beyond `n + 1` with a [`SequenceGap`] that says which range to fetch.

use thiserror::Error;

use super::{KeyTable, TableEntry};
use crate::digest::LookupDigest;

/// One mutation of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the log, starting at 1.
    pub seq: u64,
    /// What changes.
    pub op: ChangeOp,
}

/// The mutation itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOp {
    /// Insert the entry, or replace the one with the same digest.
    Upsert(TableEntry),
    /// Remove the entry with this digest (nothing happens if there is none).
    Remove(LookupDigest),
}

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The change was the next one and is now reflected.
    Applied,
    /// The table already reflected it (a duplicate or replayed delivery); nothing changed.
    AlreadyApplied,
}

/// A change arrived before the ones preceding it; the table is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("change log gap: expected sequence {expected}, received {received}")]
pub struct SequenceGap {
    /// The next sequence number the table can apply.
    pub expected: u64,
    /// The sequence number that arrived.
    pub received: u64,
}

/// Counts from applying a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Changes applied.
    pub applied: usize,
    /// Changes the table already reflected.
    pub already_applied: usize,
}

/// Where change `seq` stands for a replica at `applied_seq`: `true` when it is the next one (to
/// apply), `false` when the replica already reflects it, a [`SequenceGap`] when changes before
/// it are missing. The one rule every replica follows, with a table ([`KeyTable::apply`]) or
/// without one (a position carried through stored batches: [`super::lineage::follow`]).
pub fn is_next(applied_seq: u64, seq: u64) -> Result<bool, SequenceGap> {
    let expected = applied_seq + 1;
    if seq > expected {
        return Err(SequenceGap {
            expected,
            received: seq,
        });
    }
    Ok(seq == expected)
}

impl KeyTable {
    /// Applies one change if it is the next in sequence.
    pub fn apply(&mut self, change: &Change) -> Result<Applied, SequenceGap> {
        if !is_next(self.applied_seq, change.seq)? {
            return Ok(Applied::AlreadyApplied);
        }
        match &change.op {
            ChangeOp::Upsert(entry) => self.upsert(entry),
            ChangeOp::Remove(digest) => self.remove(digest),
        }
        self.applied_seq = change.seq;
        Ok(Applied::Applied)
    }

    /// Applies changes in order. On a gap, the changes before it stay applied (each is complete on
    /// its own) and the error says where the log must resume.
    pub fn apply_all<'a>(
        &mut self,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Result<BatchOutcome, SequenceGap> {
        let mut outcome = BatchOutcome::default();
        for change in changes {
            match self.apply(change)? {
                Applied::Applied => outcome.applied += 1,
                Applied::AlreadyApplied => outcome.already_applied += 1,
            }
        }
        Ok(outcome)
    }
}
