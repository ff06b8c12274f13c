//! The key table: the edge's replicated hash table from lookup digest to key facts.
//!
//! Nothing secret is in it: each entry holds the digest's first 16 bytes, key id, organization,
//! environment, status, expiry, scopes and rate-limit override. Entries are 48-byte slots held
//! inline in 256 shards of ordered linear probing (`shards`), so a lookup reads one run of
//! adjacent memory; organizations and *grants* (environment, status, scopes and rate limit),
//! which many keys share, are interned. `tests/table_memory.rs` holds it under 64 bytes per key
//! at 1M keys; the hot-path benchmark measures a lookup against one memory latency.
//!
//! The table only changes through [`Change`]s applied in sequence order (see [`change`]), or by
//! decoding a snapshot (see [`codec`]).

pub mod change;
pub mod codec;
mod interner;
pub mod lineage;

mod shards;

use serde::{Deserialize, Serialize};

use crate::digest::{DigestPrefix, LookupDigest};
use crate::ids::{KeyId, OrgId};
use crate::key::Environment;
use crate::ratelimit::RateLimit;
use crate::scope::{Scope, ScopeSet};
use crate::time::Timestamp;
pub use change::{Applied, Change, ChangeOp, SequenceGap};
use interner::Interner;
pub use lineage::{FeedChain, Lineage};
use shards::{SHARDS, Shard, Slot};

/// Whether a key may be used (expiry is judged separately, from `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum KeyStatus {
    /// Usable until its expiry.
    Active = 1,
    /// Revoked: refused for good.
    Revoked = 2,
}

impl KeyStatus {
    pub(crate) const fn to_byte(self) -> u8 {
        self as u8
    }

    pub(crate) const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(KeyStatus::Active),
            2 => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// One key's facts, as the control plane sends them (owned form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// HMAC-SHA256 of the key under the pepper it was made with.
    pub digest: LookupDigest,
    /// The key's public id.
    pub key_id: KeyId,
    /// The organization that owns it.
    pub org_id: OrgId,
    /// Its environment.
    pub env: Environment,
    /// Active or revoked.
    pub status: KeyStatus,
    /// When it stops working; `None` for never. (A rotation's grace period ends the old key by
    /// moving this earlier.) The last representable instant, `i64::MAX` ms, is how the table
    /// stores "never", so `Some` of it reads back as `None`: the two mean the same.
    pub expires_at: Option<Timestamp>,
    /// What it may do.
    pub scopes: ScopeSet,
    /// Its own limit, or `None` for the edge's default.
    pub rate_limit: Option<RateLimit>,
}

/// `expires_at` sentinel for "never" inside slots and snapshots.
const NEVER: i64 = i64::MAX;

/// What a key may do and how it is judged, apart from its identity and expiry: interned, since
/// most keys share one of a few.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Grant {
    pub(crate) env: Environment,
    pub(crate) status: KeyStatus,
    pub(crate) scopes: ScopeSet,
    pub(crate) rate_limit: Option<RateLimit>,
}

impl Grant {
    fn of(entry: &TableEntry) -> Self {
        Grant {
            env: entry.env,
            status: entry.status,
            scopes: entry.scopes.clone(),
            rate_limit: entry.rate_limit,
        }
    }
}

/// One entry as the table holds it (owned form): a [`TableEntry`] with its digest cut to the
/// prefix the table keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// The first 16 bytes of the lookup digest.
    pub digest_prefix: DigestPrefix,
    /// The key's public id.
    pub key_id: KeyId,
    /// The organization that owns it.
    pub org_id: OrgId,
    /// Its environment.
    pub env: Environment,
    /// Active or revoked.
    pub status: KeyStatus,
    /// When it stops working; `None` for never.
    pub expires_at: Option<Timestamp>,
    /// What it may do.
    pub scopes: ScopeSet,
    /// Its own limit, or `None` for the edge's default.
    pub rate_limit: Option<RateLimit>,
}

impl TableEntry {
    /// What a table holding this entry lists for it.
    pub fn to_row(&self) -> TableRow {
        TableRow {
            digest_prefix: self.digest.prefix(),
            key_id: self.key_id,
            org_id: self.org_id,
            env: self.env,
            status: self.status,
            expires_at: self.expires_at.filter(|t| t.as_millis() != NEVER),
            scopes: self.scopes.clone(),
            rate_limit: self.rate_limit,
        }
    }
}

/// A read-only view of one entry.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    slot: &'a Slot,
    table: &'a KeyTable,
}

impl<'a> EntryRef<'a> {
    fn grant(&self) -> &'a Grant {
        self.table.grants.get(self.slot.grant)
    }

    /// The digest prefix the entry is found by.
    pub fn digest_prefix(&self) -> &'a DigestPrefix {
        &self.slot.prefix
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.slot.key_id
    }

    /// The owning organization.
    pub fn org_id(&self) -> OrgId {
        *self.table.orgs.get(self.slot.org)
    }

    /// The key's environment.
    pub fn env(&self) -> Environment {
        self.grant().env
    }

    /// Active or revoked.
    pub fn status(&self) -> KeyStatus {
        self.grant().status
    }

    /// Expiry, `None` for never.
    pub fn expires_at(&self) -> Option<Timestamp> {
        (self.slot.expires_at != NEVER).then_some(Timestamp(self.slot.expires_at))
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &'a ScopeSet {
        &self.grant().scopes
    }

    /// The key's own rate limit, if it has one.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.grant().rate_limit
    }

    /// The owned form.
    pub fn to_row(&self) -> TableRow {
        TableRow {
            digest_prefix: *self.digest_prefix(),
            key_id: self.key_id(),
            org_id: self.org_id(),
            env: self.env(),
            status: self.status(),
            expires_at: self.expires_at(),
            scopes: self.scopes().clone(),
            rate_limit: self.rate_limit(),
        }
    }
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_row().fmt(f)
    }
}

/// The replicated key table plus the sequence number of the last change applied to it.
#[derive(Debug, Clone)]
pub struct KeyTable {
    shards: Vec<Shard>,
    len: usize,
    orgs: Interner<OrgId>,
    grants: Interner<Grant>,
    applied_seq: u64,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            shards: vec![Shard::default(); SHARDS],
            len: 0,
            orgs: Interner::default(),
            grants: Interner::default(),
            applied_seq: 0,
        }
    }
}

impl KeyTable {
    /// An empty table at sequence 0.
    pub fn new() -> Self {
        KeyTable::default()
    }

    /// An empty table. (Shards size themselves as entries arrive, a shard at a time; the
    /// capacity is accepted for callers that know it but not needed.)
    pub fn with_capacity(_capacity: usize) -> Self {
        KeyTable::default()
    }

    /// The sequence number of the last change this table reflects (0: none).
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for a digest, found by its prefix (compared in constant time).
    pub fn get(&self, digest: &LookupDigest) -> Option<EntryRef<'_>> {
        self.get_prefix(&digest.prefix())
    }

    /// The entry for a digest prefix.
    pub fn get_prefix(&self, prefix: &DigestPrefix) -> Option<EntryRef<'_>> {
        self.shards
            .get(shards::shard_of(prefix))?
            .find(prefix)
            .map(|slot| EntryRef { slot, table: self })
    }

    /// Every entry, in increasing digest order.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.slots().map(move |slot| EntryRef { slot, table: self })
    }

    /// Every entry in owned form, in increasing digest order: a canonical listing.
    pub fn to_sorted_rows(&self) -> Vec<TableRow> {
        self.entries().map(|e| e.to_row()).collect()
    }

    /// Every occupied slot, in increasing prefix order (the shards are, and come in order).
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.shards.iter().flat_map(Shard::occupied)
    }

    /// Heap bytes held by the table's own structures (shards, interners and the interned
    /// scope strings). `tests/table_memory.rs` checks it against a counting allocator.
    pub fn heap_bytes(&self) -> usize {
        let shards = self.shards.capacity() * size_of::<Shard>()
            + self.shards.iter().map(Shard::heap_bytes).sum::<usize>();
        let scope_strings = self.grants.owned_heap_bytes(|grant| {
            size_of_val(grant.scopes.as_slice())
                + grant
                    .scopes
                    .as_slice()
                    .iter()
                    .map(scope_heap_bytes)
                    .sum::<usize>()
        });
        shards + self.orgs.heap_bytes() + self.grants.heap_bytes() + scope_strings
    }

    fn upsert(&mut self, entry: &TableEntry) {
        let slot = Slot {
            prefix: entry.digest.prefix(),
            key_id: entry.key_id,
            expires_at: entry.expires_at.map_or(NEVER, |t| t.as_millis()),
            org: self.orgs.acquire(&entry.org_id),
            grant: self.grants.acquire(&Grant::of(entry)),
        };
        match self.shards[shards::shard_of(&slot.prefix)].upsert(slot) {
            Some(old) => self.release(&old),
            None => self.len += 1,
        }
    }

    fn remove(&mut self, digest: &LookupDigest) {
        let prefix = digest.prefix();
        if let Some(old) = self.shards[shards::shard_of(&prefix)].remove(&prefix) {
            self.release(&old);
            self.len -= 1;
        }
    }

    fn release(&mut self, slot: &Slot) {
        self.orgs.release(slot.org);
        self.grants.release(slot.grant);
    }
}

fn scope_heap_bytes(scope: &Scope) -> usize {
    match scope {
        Scope::AdminFull => 0,
        Scope::AllActions { resource } => resource.len(),
        Scope::Action { resource, action } => resource.len() + action.len(),
    }
}

/// Two tables are equal when they hold the same entries at the same sequence number.
impl PartialEq for KeyTable {
    fn eq(&self, other: &Self) -> bool {
        self.applied_seq == other.applied_seq && self.to_sorted_rows() == other.to_sorted_rows()
    }
}

impl Eq for KeyTable {}

#[cfg(test)]
pub(crate) mod tests;
