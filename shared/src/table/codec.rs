//! Binary encodings of the key table: snapshots and change batches.
//!
//! Both are versioned, little-endian, and end with a CRC32 of everything before it. Decoding
//! checks every length against the bytes actually present before allocating, validates every
//! field, and answers corrupt or truncated input with a [`CodecError`], never a panic.
//!
//! Snapshot (`KPSN`, version 1):
//! ```text
//! magic "KPSN" | version u8 | applied_seq u64
//! org_count u32       | org_count × org id (16 bytes)
//! scope_set_count u32 | per set: scope_count u8, per scope: len u8 + UTF-8 text
//! entry_count u32     | per entry (72 bytes): digest 32 | key id 16 | org index u32 |
//!                       scope set index u32 | env u8 | status u8 | expires_at i64 (ms, i64::MAX = never) |
//!                       requests_per_minute u32 | burst u16 (both 0 = no override)
//! crc32 u32
//! ```
//! Entries are sorted by digest and organizations/scope sets numbered in order of first use, so
//! equal tables encode to equal bytes. The decoder accepts only this canonical form (strictly
//! increasing digests, every listed organization and scope set used, first uses in index order),
//! so every snapshot it accepts re-encodes to exactly the same bytes.
//!
//! Change batch (`KPCB`, version 1): `magic | version u8 | count u32 | changes… | crc32 u32`, each
//! change `seq u64 | op u8` then, for an upsert (op 1), the entry with its organization and scopes
//! inline (`digest | key id | org id | env | status | expires_at | rpm | burst | scope_count u8 |
//! scopes`), or for a remove (op 2), the digest. Sequence numbers must increase within a batch.

use std::collections::HashMap;

use thiserror::Error;

use super::{Change, ChangeOp, KeyStatus, KeyTable, NEVER, Slot, TableEntry};
use crate::digest::{DIGEST_LEN, LookupDigest};
use crate::ids::{KeyId, OrgId};
use crate::key::Environment;
use crate::ratelimit::RateLimit;
use crate::scope::{MAX_SCOPES, Scope, ScopeSet};
use crate::time::Timestamp;

const SNAPSHOT_MAGIC: &[u8; 4] = b"KPSN";
const CHANGES_MAGIC: &[u8; 4] = b"KPCB";
const VERSION: u8 = 1;
const ENTRY_RECORD_LEN: usize = 72;
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
    /// The trailing CRC32 does not match: the bytes were damaged.
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
    let mut order: Vec<&Slot> = table.slots.iter().collect();
    order.sort_unstable_by_key(|slot| slot.digest);

    // Renumber interned values densely, in order of first use.
    let mut org_numbers: HashMap<u32, u32> = HashMap::new();
    let mut set_numbers: HashMap<u32, u32> = HashMap::new();
    let (mut orgs, mut sets) = (Vec::new(), Vec::new());
    for slot in &order {
        org_numbers.entry(slot.org).or_insert_with(|| {
            orgs.push(slot.org);
            (orgs.len() - 1) as u32
        });
        set_numbers.entry(slot.scopes).or_insert_with(|| {
            sets.push(slot.scopes);
            (sets.len() - 1) as u32
        });
    }

    let mut out = Writer(Vec::with_capacity(
        32 + orgs.len() * 16 + order.len() * ENTRY_RECORD_LEN,
    ));
    out.bytes(SNAPSHOT_MAGIC);
    out.u8(VERSION);
    out.u64(table.applied_seq);
    out.u32(orgs.len() as u32);
    for &org in &orgs {
        out.bytes(&table.orgs.get(org).to_bytes());
    }
    out.u32(sets.len() as u32);
    for &set in &sets {
        out.scope_set(table.scope_sets.get(set));
    }
    out.u32(order.len() as u32);
    for slot in order {
        out.bytes(slot.digest.as_bytes());
        out.bytes(&slot.key_id.to_bytes());
        out.u32(org_numbers[&slot.org]);
        out.u32(set_numbers[&slot.scopes]);
        out.u8(slot.env.to_byte());
        out.u8(slot.status.to_byte());
        out.i64(slot.expires_at);
        out.u32(slot.limit_rpm);
        out.u16(slot.limit_burst);
    }
    out.finish()
}

/// Decodes a snapshot into a table.
pub fn decode_snapshot(bytes: &[u8]) -> Result<KeyTable, CodecError> {
    let mut input = Reader::open(bytes, SNAPSHOT_MAGIC)?;
    let applied_seq = input.u64()?;

    let org_count = input.count(16)?;
    let mut orgs = Vec::with_capacity(org_count);
    for _ in 0..org_count {
        orgs.push(OrgId::from_bytes(input.array()?));
    }
    let set_count = input.count(1)?;
    let mut sets = Vec::with_capacity(set_count);
    for _ in 0..set_count {
        sets.push(input.scope_set()?);
    }
    if has_duplicates(&orgs) || has_duplicates(&sets) {
        return Err(CodecError::Corrupt(
            "an organization or scope set is listed twice",
        ));
    }

    let entry_count = input.count(ENTRY_RECORD_LEN)?;
    let mut records = Vec::with_capacity(entry_count);
    let mut org_refs = FirstUseCounts::new(orgs.len(), "organization index out of range");
    let mut set_refs = FirstUseCounts::new(sets.len(), "scope set index out of range");
    let mut previous_digest: Option<LookupDigest> = None;
    for _ in 0..entry_count {
        let record = input.entry_record()?;
        if previous_digest.is_some_and(|previous| previous >= record.digest) {
            return Err(CodecError::Corrupt(
                "entries are not in strictly increasing digest order",
            ));
        }
        previous_digest = Some(record.digest);
        org_refs.count(record.org)?;
        set_refs.count(record.scopes)?;
        records.push(record);
    }
    input.end()?;
    let (org_refs, set_refs) = (org_refs.finish()?, set_refs.finish()?);

    let mut table = KeyTable::with_capacity(entry_count);
    table.applied_seq = applied_seq;
    let org_handles: Vec<u32> = orgs
        .iter()
        .zip(&org_refs)
        .map(|(org, &refs)| table.orgs.acquire_many(org, refs))
        .collect();
    let set_handles: Vec<u32> = sets
        .iter()
        .zip(&set_refs)
        .map(|(set, &refs)| table.scope_sets.acquire_many(set, refs))
        .collect();
    for mut slot in records {
        slot.org = org_handles[slot.org as usize];
        slot.scopes = set_handles[slot.scopes as usize];
        table.insert_new(slot);
    }
    Ok(table)
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
                "an organization or scope set is listed but never used",
            ))
        }
    }
}

/// Encodes a batch of changes.
pub fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(16 + changes.len() * 128));
    out.bytes(CHANGES_MAGIC);
    out.u8(VERSION);
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
                let (rpm, burst) = entry
                    .rate_limit
                    .map_or((0, 0), |l| (l.requests_per_minute(), l.burst()));
                out.u32(rpm);
                out.u16(burst);
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
    let mut input = Reader::open(bytes, CHANGES_MAGIC)?;
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

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }
    fn scope_set(&mut self, set: &ScopeSet) {
        // A set holds at most MAX_SCOPES (64) scopes of at most 129 bytes each.
        self.u8(set.len() as u8);
        for scope in set.as_slice() {
            let text = scope.to_string();
            self.u8(text.len() as u8);
            self.bytes(text.as_bytes());
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.0);
        self.u32(crc);
        self.0
    }
}

/// A bounds-checked cursor over the body between the header and the CRC.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks magic, version and CRC, and positions after the version byte.
    fn open(bytes: &'a [u8], magic: &[u8; 4]) -> Result<Self, CodecError> {
        if bytes.len() < 4 || &bytes[..4] != magic {
            return Err(if bytes.len() < 4 && magic.starts_with(bytes) {
                CodecError::Truncated
            } else {
                CodecError::BadMagic
            });
        }
        let version = *bytes.get(4).ok_or(CodecError::Truncated)?;
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        if bytes.len() < 5 + 4 {
            return Err(CodecError::Truncated);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(CodecError::ChecksumMismatch);
        }
        Ok(Reader { rest: &body[5..] })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u32 count of items at least `min_item_len` bytes each, checked against what remains so a
    /// corrupt count cannot make the decoder allocate more than the input size.
    fn count(&mut self, min_item_len: usize) -> Result<usize, CodecError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_len) > self.rest.len() {
            return Err(CodecError::Truncated);
        }
        Ok(count)
    }

    fn env(&mut self) -> Result<Environment, CodecError> {
        Environment::from_byte(self.u8()?).ok_or(CodecError::Corrupt("unknown environment"))
    }

    fn status(&mut self) -> Result<KeyStatus, CodecError> {
        KeyStatus::from_byte(self.u8()?).ok_or(CodecError::Corrupt("unknown key status"))
    }

    fn expiry(&mut self) -> Result<Option<Timestamp>, CodecError> {
        let millis = self.i64()?;
        Ok((millis != NEVER).then_some(Timestamp(millis)))
    }

    fn rate_limit(&mut self) -> Result<Option<RateLimit>, CodecError> {
        match (self.u32()?, self.u16()?) {
            (0, 0) => Ok(None),
            (rpm, burst) => RateLimit::new(rpm, u32::from(burst))
                .map(Some)
                .map_err(|_| CodecError::Corrupt("invalid rate limit")),
        }
    }

    /// A scope set, which must be in canonical form (sorted, no duplicates).
    fn scope_set(&mut self) -> Result<ScopeSet, CodecError> {
        let count = usize::from(self.u8()?);
        if count > MAX_SCOPES {
            return Err(CodecError::Corrupt("too many scopes"));
        }
        let mut scopes = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(self.u8()?);
            let text = std::str::from_utf8(self.take(len)?)
                .map_err(|_| CodecError::Corrupt("scope is not UTF-8"))?;
            scopes.push(Scope::parse(text).map_err(|_| CodecError::Corrupt("invalid scope"))?);
        }
        let set = ScopeSet::new(scopes.iter().cloned())
            .map_err(|_| CodecError::Corrupt("too many scopes"))?;
        if set.as_slice() != scopes.as_slice() {
            return Err(CodecError::Corrupt("scope set is not in canonical order"));
        }
        Ok(set)
    }

    /// One fixed-size snapshot entry, with org and scope fields holding snapshot indices.
    fn entry_record(&mut self) -> Result<Slot, CodecError> {
        let digest = LookupDigest::from_bytes(self.array()?);
        let key_id = KeyId::from_bytes(self.array()?);
        let org = self.u32()?;
        let scopes = self.u32()?;
        let env = self.env()?;
        let status = self.status()?;
        let expires_at = self.i64()?;
        let (limit_rpm, limit_burst) = match self.rate_limit()? {
            Some(limit) => (limit.requests_per_minute(), limit.burst()),
            None => (0, 0),
        };
        Ok(Slot {
            digest,
            key_id,
            expires_at,
            org,
            scopes,
            limit_rpm,
            limit_burst,
            env,
            status,
        })
    }

    fn end(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}
