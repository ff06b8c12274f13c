//! The key table: the edge's replicated hash table from lookup digest to key facts.
//!
//! Nothing secret is in it: each entry holds the digest, key id, organization, environment,
//! status, expiry, scopes and rate-limit override. Entries are fixed-size slots in one dense
//! vector (72 bytes each) indexed by a `hashbrown` table of `u32` slot numbers; organizations and
//! scope sets, which many keys share, are interned. See `table_memory` in the tests and the
//! hot-path benchmark for bytes per key.
//!
//! The table only changes through [`Change`]s applied in sequence order (see [`change`]), or by
//! decoding a snapshot (see [`codec`]).

pub mod change;
pub mod codec;
mod interner;
pub mod lineage;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::digest::LookupDigest;
use crate::ids::{KeyId, OrgId};
use crate::key::Environment;
use crate::ratelimit::RateLimit;
use crate::scope::{Scope, ScopeSet};
use crate::time::Timestamp;
pub use change::{Applied, Change, ChangeOp, SequenceGap};
use interner::Interner;
pub use lineage::{FeedChain, Lineage};

/// Whether a key may be used (expiry is judged separately, from `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// The fixed-size in-memory form of an entry. Field order is chosen by the compiler; a test pins
/// the size.
#[derive(Debug, Clone)]
struct Slot {
    digest: LookupDigest,
    key_id: KeyId,
    expires_at: i64,
    org: u32,
    scopes: u32,
    /// 0 with `limit_burst` 0: no override.
    limit_rpm: u32,
    limit_burst: u16,
    env: Environment,
    status: KeyStatus,
}

/// A read-only view of one entry.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    slot: &'a Slot,
    table: &'a KeyTable,
}

impl<'a> EntryRef<'a> {
    /// The lookup digest.
    pub fn digest(&self) -> &'a LookupDigest {
        &self.slot.digest
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
        self.slot.env
    }

    /// Active or revoked.
    pub fn status(&self) -> KeyStatus {
        self.slot.status
    }

    /// Expiry, `None` for never.
    pub fn expires_at(&self) -> Option<Timestamp> {
        (self.slot.expires_at != NEVER).then_some(Timestamp(self.slot.expires_at))
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &'a ScopeSet {
        self.table.scope_sets.get(self.slot.scopes)
    }

    /// The key's own rate limit, if it has one.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        (self.slot.limit_rpm != 0)
            .then(|| RateLimit::new(self.slot.limit_rpm, u32::from(self.slot.limit_burst)).ok())
            .flatten()
    }

    /// The owned form.
    pub fn to_entry(&self) -> TableEntry {
        TableEntry {
            digest: *self.digest(),
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
        self.to_entry().fmt(f)
    }
}

/// The replicated key table plus the sequence number of the last change applied to it.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    orgs: Interner<OrgId>,
    scope_sets: Interner<ScopeSet>,
    applied_seq: u64,
}

impl KeyTable {
    /// An empty table at sequence 0.
    pub fn new() -> Self {
        KeyTable::default()
    }

    /// An empty table with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        KeyTable {
            index: HashTable::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            ..KeyTable::default()
        }
    }

    /// The sequence number of the last change this table reflects (0: none).
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry for a digest. Slot digests are compared in constant time.
    pub fn get(&self, digest: &LookupDigest) -> Option<EntryRef<'_>> {
        let slots = &self.slots;
        self.index
            .find(digest.table_hash(), |&i| {
                slots[i as usize].digest == *digest
            })
            .map(|&i| EntryRef {
                slot: &slots[i as usize],
                table: self,
            })
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.slots
            .iter()
            .map(move |slot| EntryRef { slot, table: self })
    }

    /// Every entry in owned form, sorted by digest: a canonical listing for comparisons.
    pub fn to_sorted_entries(&self) -> Vec<TableEntry> {
        let mut entries: Vec<TableEntry> = self.entries().map(|e| e.to_entry()).collect();
        entries.sort_by_key(|entry| entry.digest);
        entries
    }

    /// Heap bytes held by the table's own structures (index, slots, interners and the interned
    /// scope strings). `tests/table_memory.rs` checks it against a counting allocator.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown keeps 7/8 of its power-of-two buckets usable; each bucket is a u32 plus one
        // control byte, with one SIMD group of trailing control bytes.
        let capacity = self.index.capacity();
        let buckets = if capacity == 0 {
            0
        } else {
            (capacity * 8).div_ceil(7).next_power_of_two()
        };
        let index = buckets * (size_of::<u32>() + 1) + 16;
        let slots = self.slots.capacity() * size_of::<Slot>();
        let scope_strings = self.scope_sets.owned_heap_bytes(|set| {
            size_of_val(set.as_slice()) + set.as_slice().iter().map(scope_heap_bytes).sum::<usize>()
        });
        index + slots + self.orgs.heap_bytes() + self.scope_sets.heap_bytes() + scope_strings
    }

    fn upsert(&mut self, entry: &TableEntry) {
        let org = self.orgs.acquire(&entry.org_id);
        let scopes = self.scope_sets.acquire(&entry.scopes);
        let (limit_rpm, limit_burst) = entry
            .rate_limit
            .map_or((0, 0), |limit| (limit.requests_per_minute(), limit.burst()));
        let slot = Slot {
            digest: entry.digest,
            key_id: entry.key_id,
            expires_at: entry.expires_at.map_or(NEVER, |t| t.as_millis()),
            org,
            scopes,
            limit_rpm,
            limit_burst,
            env: entry.env,
            status: entry.status,
        };
        let hash = entry.digest.table_hash();
        let slots = &self.slots;
        match self
            .index
            .find(hash, |&i| slots[i as usize].digest == entry.digest)
        {
            Some(&i) => {
                let old = std::mem::replace(&mut self.slots[i as usize], slot);
                self.orgs.release(old.org);
                self.scope_sets.release(old.scopes);
            }
            None => self.insert_new(slot),
        }
    }

    /// Adds a slot whose digest is known to be absent.
    fn insert_new(&mut self, slot: Slot) {
        // A table beyond u32::MAX entries would need ~300 GB; slot numbers fit in u32.
        let position = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        let hash = slot.digest.table_hash();
        self.slots.push(slot);
        let slots = &self.slots;
        self.index
            .insert_unique(hash, position, |&i| slots[i as usize].digest.table_hash());
    }

    fn remove(&mut self, digest: &LookupDigest) {
        let slots = &self.slots;
        let Ok(found) = self.index.find_entry(digest.table_hash(), |&i| {
            slots[i as usize].digest == *digest
        }) else {
            return;
        };
        let (position, _) = found.remove();
        let removed = self.slots.swap_remove(position as usize);
        self.orgs.release(removed.org);
        self.scope_sets.release(removed.scopes);
        // The last slot moved into `position`: repoint its index entry.
        if let Some(moved) = self.slots.get(position as usize) {
            let old_position = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
            if let Some(i) = self
                .index
                .find_mut(moved.digest.table_hash(), |&i| i == old_position)
            {
                *i = position;
            }
        }
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
        self.applied_seq == other.applied_seq
            && self.to_sorted_entries() == other.to_sorted_entries()
    }
}

impl Eq for KeyTable {}

#[cfg(test)]
pub(crate) mod tests;
