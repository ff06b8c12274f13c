//! Snapshots in pieces: [`SnapshotDecoder`] takes a snapshot's bytes as they arrive, and
//! [`encode_snapshot_in_pieces`] hands them out as they are made.
//!
//! A snapshot of 1M keys is 48 MB. Held whole beside the table it describes (56 MB), it would
//! take an isolate past its 128 MB; in pieces, the store writes it to storage and reads it back
//! a chunk at a time, and an isolate builds its table while the bytes are still arriving.
//!
//! The decoder checks what it can as it goes (the header, every organization and grant, each
//! entry's order and references) and the XXH3-64 checksum at the end, over exactly the bytes
//! it consumed: a table comes out of [`SnapshotDecoder::finish`] only when all of it held.
//! Bytes that follow the snapshot (the store sends a change batch after it) are kept for the
//! caller.

use std::convert::Infallible;

use xxhash_rust::xxh3::Xxh3Default;

use super::wire::{Reader, Writer, check_header};
use super::{
    CodecError, ENTRY_RECORD_LEN, GRANT_MIN_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, has_duplicates,
};
use crate::digest::{DIGEST_PREFIX_LEN, DigestPrefix};
use crate::ids::{KeyId, OrgId};
use crate::table::interner::Interner;
use crate::table::shards::ShardBuilder;
use crate::table::{Grant, KeyTable, Slot};

/// Length of the checksum a snapshot ends with.
const CHECKSUM_LEN: usize = 8;

/// Encodes a table as a snapshot, handing it to `sink` in pieces of at least `piece_len`
/// bytes (the last one shorter), in order; stops at the first error `sink` returns.
///
/// Holds one piece at a time: the store writes 1 MiB pieces to storage this way.
pub fn encode_snapshot_in_pieces<E>(
    table: &KeyTable,
    piece_len: usize,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let last = encode_pieces(table, piece_len, &mut sink)?;
    sink(&last)
}

/// Encodes a table as one snapshot.
pub(super) fn encode_whole(table: &KeyTable) -> Vec<u8> {
    let never = |_: &[u8]| -> Result<(), Infallible> { Ok(()) };
    match encode_pieces(table, usize::MAX, never) {
        Ok(bytes) => bytes,
        Err(never) => match never {},
    }
}

/// Writes the snapshot, handing every full piece to `sink`; returns the last piece, sealed.
fn encode_pieces<E>(
    table: &KeyTable,
    piece_len: usize,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    // Renumber interned values densely, in order of first use (slots come in prefix order).
    let mut org_numbers = vec![u32::MAX; table.orgs.handle_bound()];
    let mut grant_numbers = vec![u32::MAX; table.grants.handle_bound()];
    let (mut orgs, mut grants) = (Vec::new(), Vec::new());
    for slot in table.slots() {
        first_use(&mut org_numbers, &mut orgs, slot.org);
        first_use(&mut grant_numbers, &mut grants, slot.grant);
    }
    let whole_len = 32 + orgs.len() * 16 + grants.len() * 64 + table.len() * ENTRY_RECORD_LEN;
    let mut out = Writer(Vec::with_capacity(
        whole_len.min(piece_len.saturating_add(64)),
    ));
    let mut hasher = Xxh3Default::new();
    let mut flush = |out: &mut Writer| -> Result<(), E> {
        if out.0.len() >= piece_len {
            hasher.update(&out.0);
            sink(&out.0)?;
            out.0.clear();
        }
        Ok(())
    };

    out.bytes(SNAPSHOT_MAGIC);
    out.u8(SNAPSHOT_VERSION);
    out.u64(table.applied_seq);
    out.u32(orgs.len() as u32);
    for &org in &orgs {
        out.bytes(&table.orgs.get(org).to_bytes());
        flush(&mut out)?;
    }
    out.u32(grants.len() as u32);
    for &grant in &grants {
        let grant = table.grants.get(grant);
        out.u8(grant.env.to_byte());
        out.u8(grant.status.to_byte());
        out.rate_limit(grant.rate_limit);
        out.scope_set(&grant.scopes);
        flush(&mut out)?;
    }
    out.u32(table.len() as u32);
    for slot in table.slots() {
        out.bytes(slot.prefix.as_bytes());
        out.bytes(&slot.key_id.to_bytes());
        out.i64(slot.expires_at);
        out.u32(org_numbers[slot.org as usize]);
        out.u32(grant_numbers[slot.grant as usize]);
        flush(&mut out)?;
    }
    hasher.update(&out.0);
    out.0.extend_from_slice(&hasher.digest().to_le_bytes());
    Ok(out.0)
}

/// Numbers `handle` at its first use: its number is the count of handles numbered before it.
fn first_use(numbers: &mut [u32], order: &mut Vec<u32>, handle: u32) {
    let number = &mut numbers[handle as usize];
    if *number == u32::MAX {
        *number = order.len() as u32;
        order.push(handle);
    }
}

/// Decodes a snapshot from its bytes in pieces of any size: [`push`](Self::push) each piece,
/// then [`finish`](Self::finish).
pub struct SnapshotDecoder {
    /// Hashes every byte consumed before the checksum; `None` when the caller checked it.
    hasher: Option<Xxh3Default>,
    /// Bytes received and not consumed yet: a prelude not yet complete, part of an entry, part
    /// of the checksum, or (once the snapshot is complete) what followed it.
    pending: Vec<u8>,
    /// The prelude is tried again once `pending` holds this many bytes (doubling, so a long
    /// prelude arriving in small pieces is parsed a bounded number of times).
    retry_prelude_at: usize,
    stage: Stage,
}

enum Stage {
    /// Header, organizations, grants and entry count.
    Prelude,
    /// The entries, laid out a shard at a time.
    Entries(Box<Building>),
    /// Every entry is in: the checksum comes next.
    Checksum(Box<KeyTable>),
    /// The snapshot is decoded; `pending` holds what followed it.
    Complete(Box<KeyTable>),
    /// An error was found; it is the answer to every later call.
    Failed(CodecError),
}

impl Default for SnapshotDecoder {
    fn default() -> Self {
        SnapshotDecoder::new()
    }
}

impl SnapshotDecoder {
    /// A decoder that checks the checksum at the end of the snapshot.
    pub fn new() -> Self {
        SnapshotDecoder {
            hasher: Some(Xxh3Default::new()),
            pending: Vec::new(),
            retry_prelude_at: 0,
            stage: Stage::Prelude,
        }
    }

    /// A decoder for a snapshot body whose checksum the caller already checked and removed.
    pub(super) fn checked() -> Self {
        SnapshotDecoder {
            hasher: None,
            ..SnapshotDecoder::new()
        }
    }

    /// Takes the next bytes. An error is final: later calls return it again.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let outcome = self.take(bytes);
        if let Err(error) = &outcome {
            self.stage = Stage::Failed(error.clone());
        }
        outcome
    }

    /// Whether every byte of the snapshot arrived and checked out (more bytes are kept for
    /// [`finish`](Self::finish)).
    pub fn is_complete(&self) -> bool {
        matches!(self.stage, Stage::Complete(_))
    }

    /// The table, and the bytes that followed the snapshot; [`CodecError::Truncated`] if the
    /// snapshot is not complete.
    pub fn finish(mut self) -> Result<(KeyTable, Vec<u8>), CodecError> {
        if matches!(self.stage, Stage::Prelude) {
            // The last attempt may have been held back waiting for more bytes.
            self.retry_prelude_at = 0;
            self.push(&[])?;
        }
        match self.stage {
            Stage::Complete(table) => Ok((*table, self.pending)),
            Stage::Failed(error) => Err(error),
            Stage::Prelude | Stage::Entries(_) | Stage::Checksum(_) => Err(CodecError::Truncated),
        }
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        match &self.stage {
            Stage::Prelude => {}
            Stage::Failed(error) => return Err(error.clone()),
            _ => return self.after_prelude(bytes),
        }
        if self.pending.is_empty() {
            // The usual case, a first piece holding the whole prelude: parsed in place.
            return match parse_prelude(bytes) {
                Ok((building, used)) => {
                    if let Some(hasher) = &mut self.hasher {
                        hasher.update(&bytes[..used]);
                    }
                    self.stage = Stage::Entries(building);
                    self.after_prelude(&bytes[used..])
                }
                Err(CodecError::Truncated) => {
                    self.pending.extend_from_slice(bytes);
                    self.retry_prelude_at = bytes.len().saturating_mul(2).max(64);
                    Ok(())
                }
                Err(error) => Err(error),
            };
        }
        self.pending.extend_from_slice(bytes);
        // Bytes that are not a snapshot at all are refused at once.
        match check_header(&self.pending, SNAPSHOT_MAGIC, SNAPSHOT_VERSION) {
            Err(CodecError::Truncated) | Ok(()) => {}
            Err(error) => return Err(error),
        }
        if self.pending.len() < self.retry_prelude_at {
            return Ok(());
        }
        match parse_prelude(&self.pending) {
            Err(CodecError::Truncated) => {
                self.retry_prelude_at = self.pending.len().saturating_mul(2).max(64);
                Ok(())
            }
            Err(error) => Err(error),
            Ok((building, used)) => {
                let carried = std::mem::take(&mut self.pending);
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&carried[..used]);
                }
                self.stage = Stage::Entries(building);
                self.after_prelude(&carried[used..])
            }
        }
    }

    /// Takes bytes once the prelude is parsed.
    fn after_prelude(&mut self, mut bytes: &[u8]) -> Result<(), CodecError> {
        loop {
            match &mut self.stage {
                Stage::Entries(building) => {
                    bytes =
                        building.take_entries(&mut self.pending, self.hasher.as_mut(), bytes)?;
                    if building.remaining > 0 {
                        return Ok(());
                    }
                    let Stage::Entries(building) =
                        std::mem::replace(&mut self.stage, Stage::Prelude)
                    else {
                        unreachable!("matched above");
                    };
                    let table = Box::new(building.finish()?);
                    self.stage = if self.hasher.is_some() {
                        Stage::Checksum(table)
                    } else {
                        Stage::Complete(table)
                    };
                }
                Stage::Checksum(_) => {
                    let wanted = CHECKSUM_LEN - self.pending.len();
                    let (part, rest) = bytes.split_at(wanted.min(bytes.len()));
                    self.pending.extend_from_slice(part);
                    bytes = rest;
                    if self.pending.len() < CHECKSUM_LEN {
                        return Ok(());
                    }
                    let expected = self.hasher.as_ref().map(|h| h.digest().to_le_bytes());
                    if expected.as_ref().map(<[u8; 8]>::as_slice) != Some(self.pending.as_slice()) {
                        return Err(CodecError::ChecksumMismatch);
                    }
                    self.pending.clear();
                    let Stage::Checksum(table) = std::mem::replace(&mut self.stage, Stage::Prelude)
                    else {
                        unreachable!("matched above");
                    };
                    self.stage = Stage::Complete(table);
                }
                Stage::Complete(_) => {
                    self.pending.extend_from_slice(bytes);
                    return Ok(());
                }
                Stage::Failed(error) => return Err(error.clone()),
                Stage::Prelude => unreachable!("the prelude is parsed before this is called"),
            }
        }
    }
}

/// Parses the header, organizations, grants and entry count from the start of `bytes`;
/// [`CodecError::Truncated`] when they are not all there yet.
fn parse_prelude(bytes: &[u8]) -> Result<(Box<Building>, usize), CodecError> {
    check_header(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
    let mut input = Reader::unchecked(&bytes[5..]);
    let applied_seq = input.u64()?;
    let org_count = input.count(16)?;
    let mut orgs = Vec::with_capacity(org_count);
    for _ in 0..org_count {
        orgs.push(OrgId::from_bytes(input.array()?));
    }
    let grant_count = input.count(GRANT_MIN_LEN)?;
    let mut grants = Vec::with_capacity(grant_count);
    for _ in 0..grant_count {
        grants.push(Grant {
            env: input.env()?,
            status: input.status()?,
            rate_limit: input.rate_limit()?,
            scopes: input.scope_set()?,
        });
    }
    if has_duplicates(&orgs) || has_duplicates(&grants) {
        return Err(CodecError::Corrupt(
            "an organization or grant is listed twice",
        ));
    }
    // Not checked against the bytes present: the entries are still on their way. Nothing is
    // allocated by this count; a count the bytes do not fill ends as `Truncated`.
    let entry_count = input.u32()? as usize;
    let used = bytes.len() - input.remaining();
    let mut table = KeyTable::new();
    table.applied_seq = applied_seq;
    table.len = entry_count;
    let building = Building {
        table,
        org_refs: FirstUseCounts::new(orgs.len(), "organization index out of range"),
        grant_refs: FirstUseCounts::new(grants.len(), "grant index out of range"),
        orgs,
        grants,
        remaining: entry_count,
        previous: None,
        shard: 0,
        shard_slots: Vec::new(),
    };
    Ok((Box::new(building), used))
}

/// A table being laid out from entries in prefix order, a shard at a time.
struct Building {
    table: KeyTable,
    orgs: Vec<OrgId>,
    grants: Vec<Grant>,
    org_refs: FirstUseCounts,
    grant_refs: FirstUseCounts,
    /// Entries still to come.
    remaining: usize,
    previous: Option<u128>,
    /// The shard being filled, and its entries so far (laid out when the next shard starts).
    shard: usize,
    shard_slots: Vec<Slot>,
}

impl Building {
    /// Takes whole entries from a partial one in `pending` and then `bytes`; keeps a partial
    /// entry at the end in `pending`; returns the bytes after the last entry.
    fn take_entries<'a>(
        &mut self,
        pending: &mut Vec<u8>,
        mut hasher: Option<&mut Xxh3Default>,
        mut bytes: &'a [u8],
    ) -> Result<&'a [u8], CodecError> {
        if !pending.is_empty() && self.remaining > 0 {
            let (part, rest) = bytes.split_at((ENTRY_RECORD_LEN - pending.len()).min(bytes.len()));
            pending.extend_from_slice(part);
            bytes = rest;
            if pending.len() < ENTRY_RECORD_LEN {
                return Ok(bytes);
            }
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(pending);
            }
            self.entry(pending)?;
            pending.clear();
        }
        let whole = (bytes.len() / ENTRY_RECORD_LEN).min(self.remaining);
        let (records, rest) = bytes.split_at(whole * ENTRY_RECORD_LEN);
        if let Some(hasher) = hasher {
            hasher.update(records);
        }
        for record in records.chunks_exact(ENTRY_RECORD_LEN) {
            self.entry(record)?;
        }
        if self.remaining == 0 {
            return Ok(rest);
        }
        pending.extend_from_slice(rest);
        Ok(&[])
    }

    /// One 48-byte entry, checked: strictly after the one before, references in range and
    /// numbered in order of first use.
    fn entry(&mut self, record: &[u8]) -> Result<(), CodecError> {
        let slot = slot_record(record);
        let key = slot.prefix.order_key();
        if self.previous.is_some_and(|previous| previous >= key) {
            return Err(CodecError::Corrupt(
                "entries are not in strictly increasing digest order",
            ));
        }
        self.previous = Some(key);
        self.org_refs.count(slot.org)?;
        self.grant_refs.count(slot.grant)?;
        let shard = usize::from(record[0]);
        if shard != self.shard {
            self.lay_out_shard();
            self.shard = shard;
        }
        self.shard_slots.push(slot);
        self.remaining -= 1;
        Ok(())
    }

    /// Lays out the current shard's entries (sized for exactly that many).
    fn lay_out_shard(&mut self) {
        if self.shard_slots.is_empty() {
            return;
        }
        let mut builder = ShardBuilder::for_len(self.shard_slots.len());
        for slot in self.shard_slots.drain(..) {
            builder.push(slot);
        }
        self.table.shards[self.shard] = builder.finish();
    }

    fn finish(mut self) -> Result<KeyTable, CodecError> {
        self.lay_out_shard();
        // Handles are the snapshot's own numbers: the slots already hold them.
        self.table.orgs = Interner::from_counted(self.orgs, self.org_refs.finish()?);
        self.table.grants = Interner::from_counted(self.grants, self.grant_refs.finish()?);
        Ok(self.table)
    }
}

/// One 48-byte snapshot entry as a slot whose handles are the snapshot's numbers.
fn slot_record(record: &[u8]) -> Slot {
    let field = |from: usize, to: usize| &record[from..to];
    let mut prefix = [0u8; DIGEST_PREFIX_LEN];
    prefix.copy_from_slice(field(0, 16));
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(field(16, 32));
    let mut expires = [0u8; 8];
    expires.copy_from_slice(field(32, 40));
    let mut org = [0u8; 4];
    org.copy_from_slice(field(40, 44));
    let mut grant = [0u8; 4];
    grant.copy_from_slice(field(44, 48));
    Slot {
        prefix: DigestPrefix::from_bytes(prefix),
        key_id: KeyId::from_bytes(key_id),
        expires_at: i64::from_le_bytes(expires),
        org: u32::from_le_bytes(org),
        grant: u32::from_le_bytes(grant),
    }
}

/// Reference counts of a snapshot's interned values (organizations or grants), checking
/// they are numbered in order of first use: the values used so far are always a prefix.
struct FirstUseCounts {
    counts: Vec<u32>,
    used: usize,
    out_of_range: &'static str,
}

impl FirstUseCounts {
    /// Counts for `listed` values (already read from the input, so bounded by its length).
    fn new(listed: usize, out_of_range: &'static str) -> Self {
        FirstUseCounts {
            counts: vec![0; listed],
            used: 0,
            out_of_range,
        }
    }

    /// Counts one use of value `index`: one already used, or the next unused one.
    fn count(&mut self, index: u32) -> Result<(), CodecError> {
        let index = index as usize;
        if index >= self.counts.len() {
            return Err(CodecError::Corrupt(self.out_of_range));
        }
        if index > self.used {
            return Err(CodecError::Corrupt(
                "interned values are not numbered in order of first use",
            ));
        }
        if index == self.used {
            self.used += 1;
        }
        self.counts[index] += 1;
        Ok(())
    }

    /// The counts, if every listed value was used.
    fn finish(self) -> Result<Vec<u32>, CodecError> {
        if self.used == self.counts.len() {
            Ok(self.counts)
        } else {
            Err(CodecError::Corrupt(
                "an organization or grant is listed but never used",
            ))
        }
    }
}
