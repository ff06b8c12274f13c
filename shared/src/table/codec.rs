//! Binary encodings of the key table: snapshots and change batches.
//!
//! Both are versioned, little-endian, and end with a checksum of everything before it (XXH3-64
//! for snapshots, CRC32 for change batches: see [`wire`]). Decoding
//! checks every length against the bytes actually present before allocating, validates every
//! field, and answers corrupt or truncated input with a [`CodecError`], never a panic.
//!
//! Snapshot (`KPSN`, version 2):
//! ```text
//! magic "KPSN" | version u8 | applied_seq u64
//! org_count u32   | org_count × org id (16 bytes)
//! grant_count u32 | per grant: env u8 | status u8 | requests_per_minute u32 | burst u16
//!                   (both 0 = no override) | scope_count u8, per scope: len u8 + UTF-8 text
//! entry_count u32 | per entry (48 bytes, the table's own slot): digest prefix 16 | key id 16 |
//!                   expires_at i64 (ms, i64::MAX = never) | org index u32 | grant index u32
//! xxh3_64 u64
//! ```
//! Entries are sorted by digest prefix and organizations/grants numbered in order of first use,
//! so equal tables encode to equal bytes. The decoder accepts only this canonical form (strictly
//! increasing prefixes, every listed organization and grant used, first uses in index order),
//! so every snapshot it accepts re-encodes to exactly the same bytes. Version 1 (72-byte
//! entries with full digests) is no longer read: an edge store holding one reloads a snapshot
//! from the control plane, as it does for any snapshot it cannot decode.
//!
//! Change batch (`KPCB`, version 1): `magic | version u8 | count u32 | changes… | crc32 u32`, each
//! change `seq u64 | op u8` then, for an upsert (op 1), the entry with its organization and scopes
//! inline (`digest | key id | org id | env | status | expires_at | rpm | burst | scope_count u8 |
//! scopes`), or for a remove (op 2), the digest. Sequence numbers must increase within a batch.

use thiserror::Error;

mod wire;

pub use wire::seal;
use wire::{Reader, Writer};

use super::interner::Interner;
use super::shards::{SHARDS, ShardBuilder};
use super::{Change, ChangeOp, Grant, KeyStatus, KeyTable, NEVER, Slot, TableEntry};
use crate::digest::{DIGEST_LEN, DIGEST_PREFIX_LEN, DigestPrefix, LookupDigest};
use crate::ids::{KeyId, OrgId};

const SNAPSHOT_MAGIC: &[u8; 4] = b"KPSN";
const CHANGES_MAGIC: &[u8; 4] = b"KPCB";
const SNAPSHOT_VERSION: u8 = 2;
const CHANGES_VERSION: u8 = 1;
const ENTRY_RECORD_LEN: usize = 48;
/// The smallest grant record: env, status, rate limit (6) and an empty scope set's count.
const GRANT_MIN_LEN: usize = 9;
const OP_UPSERT: u8 = 1;
const OP_REMOVE: u8 = 2;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ends before the structure it announces.
    #[error("input is truncated")]
    Truncated,
    /// Not a snapshot / change batch at all.
    #[error("unrecognized format (bad magic bytes)")]
    BadMagic,
    /// Written by a newer (or unknown) version of the format.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The trailing checksum does not match: the bytes were damaged.
    #[error("checksum mismatch: the data is corrupt")]
    ChecksumMismatch,
    /// A field has an impossible value.
    #[error("corrupt data: {0}")]
    Corrupt(&'static str),
    /// Bytes remain after the announced structure.
    #[error("unexpected bytes after the end of the data")]
    TrailingBytes,
}

/// Encodes a table as a snapshot.
pub fn encode_snapshot(table: &KeyTable) -> Vec<u8> {
    // Renumber interned values densely, in order of first use (slots come in prefix order).
    let mut org_numbers = vec![u32::MAX; table.orgs.handle_bound()];
    let mut grant_numbers = vec![u32::MAX; table.grants.handle_bound()];
    let (mut orgs, mut grants) = (Vec::new(), Vec::new());
    for slot in table.slots() {
        first_use(&mut org_numbers, &mut orgs, slot.org);
        first_use(&mut grant_numbers, &mut grants, slot.grant);
    }

    let mut out = Writer(Vec::with_capacity(
        32 + orgs.len() * 16 + grants.len() * 64 + table.len() * ENTRY_RECORD_LEN,
    ));
    out.bytes(SNAPSHOT_MAGIC);
    out.u8(SNAPSHOT_VERSION);
    out.u64(table.applied_seq);
    out.u32(orgs.len() as u32);
    for &org in &orgs {
        out.bytes(&table.orgs.get(org).to_bytes());
    }
    out.u32(grants.len() as u32);
    for &grant in &grants {
        let grant = table.grants.get(grant);
        out.u8(grant.env.to_byte());
        out.u8(grant.status.to_byte());
        out.rate_limit(grant.rate_limit);
        out.scope_set(&grant.scopes);
    }
    out.u32(table.len() as u32);
    for slot in table.slots() {
        out.bytes(slot.prefix.as_bytes());
        out.bytes(&slot.key_id.to_bytes());
        out.i64(slot.expires_at);
        out.u32(org_numbers[slot.org as usize]);
        out.u32(grant_numbers[slot.grant as usize]);
    }
    out.finish()
}

/// Numbers `handle` at its first use: its number is the count of handles numbered before it.
fn first_use(numbers: &mut [u32], order: &mut Vec<u32>, handle: u32) {
    let number = &mut numbers[handle as usize];
    if *number == u32::MAX {
        *number = order.len() as u32;
        order.push(handle);
    }
}

/// Decodes a snapshot into a table.
///
/// Entries arrive in prefix order, which is the table's own: each shard is laid out in one
/// pass, an entry at its home or just after the one before, with no hashing and no probing.
pub fn decode_snapshot(bytes: &[u8]) -> Result<KeyTable, CodecError> {
    let mut input = Reader::open(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
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

    let entry_count = input.count(ENTRY_RECORD_LEN)?;
    let records = input.take(entry_count * ENTRY_RECORD_LEN)?;
    input.end()?;
    let mut per_shard = [0usize; SHARDS];
    for record in records.chunks_exact(ENTRY_RECORD_LEN) {
        per_shard[usize::from(record[0])] += 1;
    }

    let mut table = KeyTable::new();
    let mut org_refs = FirstUseCounts::new(orgs.len(), "organization index out of range");
    let mut grant_refs = FirstUseCounts::new(grants.len(), "grant index out of range");
    let mut previous: Option<u128> = None;
    let mut shard = 0;
    let mut builder = ShardBuilder::for_len(per_shard[0]);
    for record in records.chunks_exact(ENTRY_RECORD_LEN) {
        let slot = slot_record(record);
        let key = slot.prefix.order_key();
        if previous.is_some_and(|previous| previous >= key) {
            return Err(CodecError::Corrupt(
                "entries are not in strictly increasing digest order",
            ));
        }
        previous = Some(key);
        org_refs.count(slot.org)?;
        grant_refs.count(slot.grant)?;
        while shard < usize::from(record[0]) {
            table.shards[shard] =
                std::mem::replace(&mut builder, ShardBuilder::for_len(0)).finish();
            shard += 1;
            builder = ShardBuilder::for_len(per_shard[shard]);
        }
        builder.push(slot);
    }
    table.shards[shard] = builder.finish();
    table.len = entry_count;
    table.applied_seq = applied_seq;
    // Handles are the snapshot's own numbers: the slots already hold them.
    table.orgs = Interner::from_counted(orgs, org_refs.finish()?);
    table.grants = Interner::from_counted(grants, grant_refs.finish()?);
    Ok(table)
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

/// Reference counts of a snapshot's interned values (organizations or scope sets), checking
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

/// Encodes a batch of changes.
pub fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(16 + changes.len() * 128));
    out.bytes(CHANGES_MAGIC);
    out.u8(CHANGES_VERSION);
    out.u32(changes.len() as u32);
    for change in changes {
        out.u64(change.seq);
        match &change.op {
            ChangeOp::Upsert(entry) => {
                out.u8(OP_UPSERT);
                out.bytes(entry.digest.as_bytes());
                out.bytes(&entry.key_id.to_bytes());
                out.bytes(&entry.org_id.to_bytes());
                out.u8(entry.env.to_byte());
                out.u8(entry.status.to_byte());
                out.i64(entry.expires_at.map_or(NEVER, |t| t.as_millis()));
                out.rate_limit(entry.rate_limit);
                out.scope_set(&entry.scopes);
            }
            ChangeOp::Remove(digest) => {
                out.u8(OP_REMOVE);
                out.bytes(digest.as_bytes());
            }
        }
    }
    out.finish()
}

/// Decodes a batch of changes.
pub fn decode_changes(bytes: &[u8]) -> Result<Vec<Change>, CodecError> {
    let mut input = Reader::open(bytes, CHANGES_MAGIC, CHANGES_VERSION)?;
    // The smallest change (a remove) is 41 bytes.
    let count = input.count(8 + 1 + DIGEST_LEN)?;
    let mut changes: Vec<Change> = Vec::with_capacity(count);
    for _ in 0..count {
        let seq = input.u64()?;
        if changes.last().is_some_and(|previous| previous.seq >= seq) {
            return Err(CodecError::Corrupt("sequence numbers do not increase"));
        }
        let op = match input.u8()? {
            OP_UPSERT => {
                let digest = LookupDigest::from_bytes(input.array()?);
                let key_id = KeyId::from_bytes(input.array()?);
                let org_id = OrgId::from_bytes(input.array()?);
                let env = input.env()?;
                let status = input.status()?;
                let expires_at = input.expiry()?;
                let rate_limit = input.rate_limit()?;
                let scopes = input.scope_set()?;
                ChangeOp::Upsert(TableEntry {
                    digest,
                    key_id,
                    org_id,
                    env,
                    status,
                    expires_at,
                    scopes,
                    rate_limit,
                })
            }
            OP_REMOVE => ChangeOp::Remove(LookupDigest::from_bytes(input.array()?)),
            _ => return Err(CodecError::Corrupt("unknown change operation")),
        };
        changes.push(Change { seq, op });
    }
    input.end()?;
    Ok(changes)
}

fn has_duplicates<T: Eq + std::hash::Hash>(values: &[T]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    !values.iter().all(|value| seen.insert(value))
}
