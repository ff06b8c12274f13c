//! Binary encodings of the key table: snapshots and change batches.
//!
//! Both are versioned, little-endian, and end with a checksum of everything before it (XXH3-64
//! for snapshots, CRC32 for change batches: see `wire`). Decoding
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

mod stream;
mod wire;

pub use stream::{SnapshotDecoder, encode_snapshot_in_pieces};
pub use wire::seal;
use wire::{Reader, Writer};

use super::{Change, ChangeOp, KeyStatus, KeyTable, NEVER, TableEntry};
use crate::digest::{DIGEST_LEN, LookupDigest};
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

/// Encodes a table as a snapshot (see [`encode_snapshot_in_pieces`] to hold less at once).
pub fn encode_snapshot(table: &KeyTable) -> Vec<u8> {
    stream::encode_whole(table)
}

/// The sequence a snapshot starts with (its `applied_seq`), read from its first bytes (at
/// least 13) without checking the rest: what the edge's store reads of the snapshot it stored
/// before it serves it (every isolate's decoder checks the whole).
pub fn snapshot_sequence(start: &[u8]) -> Result<u64, CodecError> {
    wire::check_header(start, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
    let seq = start.get(5..13).ok_or(CodecError::Truncated)?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(seq);
    Ok(u64::from_le_bytes(bytes))
}

/// Decodes a snapshot into a table (see [`SnapshotDecoder`] for one arriving in pieces).
///
/// Entries arrive in prefix order, which is the table's own: each shard is laid out in one
/// pass, an entry at its home or just after the one before, with no hashing and no probing.
pub fn decode_snapshot(bytes: &[u8]) -> Result<KeyTable, CodecError> {
    // The checksum first, over the whole input: damage is reported as such.
    Reader::open(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
    let mut decoder = SnapshotDecoder::checked();
    decoder.push(&bytes[..bytes.len() - 8])?;
    let (table, rest) = decoder.finish()?;
    if rest.is_empty() {
        Ok(table)
    } else {
        Err(CodecError::TrailingBytes)
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

/// A leading part of `changes` that encodes in at most `limit` bytes (one change, whatever its
/// size, when even one is over it), and its encoding; the part is empty only when `changes`
/// is. It is the whole batch halved until it fits, so it holds at least half of what would
/// fit: a producer sends a long batch in a few bodies under a receiver's bound.
pub fn encode_changes_within(changes: &[Change], limit: usize) -> (&[Change], Vec<u8>) {
    let mut part = changes;
    loop {
        let body = encode_changes(part);
        if body.len() <= limit || part.len() <= 1 {
            return (part, body);
        }
        part = &part[..part.len().div_ceil(2)];
    }
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
