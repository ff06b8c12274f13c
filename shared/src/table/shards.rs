//! The key table's memory layout: entries inline in 256 shards of ordered linear probing, so a
//! lookup reads one run of adjacent memory and pays about one memory latency.
//!
//! **Slots.** An entry is one 48-byte [`Slot`]: the digest prefix (16), the key id (16), the
//! expiry (8), and two interned handles (4 + 4): the organization, and the *grant* (environment,
//! status, scopes and rate-limit override, which many keys share). A slot whose grant is
//! [`EMPTY`] holds nothing; its prefix is all ones, the largest value, so a scan stops there.
//!
//! **Placement.** The top byte of the prefix picks the shard; the next 56 bits, scaled to the
//! shard's bucket count, give the entry's *home*. Each shard is one `Vec<Slot>` kept in
//! *ordered linear probing* (the Robin Hood order): every entry sits at or after its home, with
//! no empty slot between, and each run of occupied slots is sorted by prefix. Since the home
//! grows with the prefix, a whole shard, and the shards in order, is sorted by prefix.
//!
//! **Lookup.** From the home, [`GROUP`] slots are read at once and counted (how many hold a
//! smaller prefix): the four loads do not depend on each other, so their cache misses overlap
//! and cost one memory latency; only when all four are smaller does the scan read the next
//! four (the mean displacement at these loads is two to four slots). Four measured faster than
//! eight here: eight adjacent slots are six or seven cache lines, which leave the next lookup
//! no room to start its own misses. The first slot not
//! smaller is the match or proves there is none. The test of a match is the constant-time
//! equality of the 16-byte prefix ([`DigestPrefix`]'s `==`); the order comparisons that
//! steer the scan only tell where among HMAC outputs the caller's unknown digest falls.
//!
//! **Matching on 16 bytes.** The table keeps the first 16 bytes of each HMAC-SHA256 digest,
//! not all 32. A caller without the pepper cannot aim at a 128-bit prefix any better than at
//! the whole digest (a guess matches one of n keys with probability n/2¹²⁸), and two real
//! keys' prefixes meet with probability about n²/2¹²⁹. The control plane keeps the full digest.
//!
//! **Memory.** Shards are built at load [`BUILD_LOAD_PCT`] (58.5 bytes per key), grow when an
//! insert would pass [`MAX_LOAD_PCT`] and shrink below [`MIN_LOAD_PCT`], each time rebuilt at
//! the build load: between 54 and 63 bytes of slots per key. A
//! resize copies one shard (1/256 of the table), so its peak is small; `tests/table_memory.rs`
//! holds the whole at 1M keys, peak included, under 64 bytes per key.

use crate::digest::DigestPrefix;
use crate::ids::KeyId;

/// Shards (by the prefix's top byte).
pub(super) const SHARDS: usize = 256;
/// Slots a lookup reads at once.
pub(super) const GROUP: usize = 4;
/// The load a shard is built or rebuilt at, in percent.
pub(super) const BUILD_LOAD_PCT: usize = 82;
/// An insert that would take a shard past this load rebuilds it larger first.
pub(super) const MAX_LOAD_PCT: usize = 89;
/// A removal that leaves a shard below this load rebuilds it smaller.
pub(super) const MIN_LOAD_PCT: usize = 76;
/// The fewest buckets a shard that holds anything has.
const MIN_BUCKETS: usize = 8;
/// The `grant` of a slot that holds nothing.
pub(super) const EMPTY: u32 = u32::MAX;

/// One entry, or an empty place (see the module header).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(super) struct Slot {
    pub(super) prefix: DigestPrefix,
    pub(super) key_id: KeyId,
    /// Milliseconds since the epoch; `i64::MAX` for never.
    pub(super) expires_at: i64,
    pub(super) org: u32,
    pub(super) grant: u32,
}

impl Slot {
    const VACANT: Slot = Slot {
        prefix: DigestPrefix::from_bytes([0xff; 16]),
        key_id: KeyId::from_bytes([0; 16]),
        expires_at: 0,
        org: 0,
        grant: EMPTY,
    };

    fn order_key(&self) -> u128 {
        self.prefix.order_key()
    }

    pub(super) fn is_occupied(&self) -> bool {
        self.grant != EMPTY
    }
}

/// Which shard a prefix belongs to.
pub(super) fn shard_of(prefix: &DigestPrefix) -> usize {
    usize::from(prefix.as_bytes()[0])
}

/// The slot an order key starts from in a shard of `buckets` buckets: the 32 bits after the
/// shard byte, scaled (multiply and shift: any bucket count works, and in 64-bit arithmetic,
/// which wasm32 has natively).
fn home(key: u128, buckets: usize) -> usize {
    let below_shard = (key >> 88) as u64 & 0xffff_ffff;
    ((below_shard * buckets as u64) >> 32) as usize
}

/// Buckets for `len` entries at the build load.
fn buckets_for(len: usize) -> usize {
    (len * 100).div_ceil(BUILD_LOAD_PCT).max(MIN_BUCKETS)
}

/// One shard: `slots` holds `buckets` home places, then room for runs that pass the last one,
/// always ending in at least [`GROUP`] empty slots (so a group read never leaves the vector
/// while a run goes on).
#[derive(Debug, Clone, Default)]
pub(super) struct Shard {
    slots: Vec<Slot>,
    buckets: usize,
    len: usize,
}

impl Shard {
    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }

    /// The occupied slots, in prefix order.
    pub(super) fn occupied(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|slot| slot.is_occupied())
    }

    /// The slot holding `prefix`.
    pub(super) fn find(&self, prefix: &DigestPrefix) -> Option<&Slot> {
        let key = prefix.order_key();
        let mut at = home(key, self.buckets);
        loop {
            let group = self.slots.get(at..at + GROUP)?;
            let smaller: usize = group
                .iter()
                .map(|slot| usize::from(slot.order_key() < key))
                .sum();
            if let Some(slot) = group.get(smaller) {
                return (slot.is_occupied() && slot.prefix == *prefix).then_some(slot);
            }
            at += GROUP;
        }
    }

    /// Where `key` is or belongs: the first slot from its home whose prefix is not smaller.
    fn position(&self, key: u128) -> usize {
        let mut at = home(key, self.buckets);
        while self
            .slots
            .get(at)
            .is_some_and(|slot| slot.order_key() < key)
        {
            at += 1;
        }
        at
    }

    /// Inserts `slot`, or replaces the entry with its prefix and returns that entry.
    pub(super) fn upsert(&mut self, slot: Slot) -> Option<Slot> {
        let key = slot.order_key();
        if !self.slots.is_empty() {
            let at = self.position(key);
            if self.slots[at].is_occupied() && self.slots[at].prefix == slot.prefix {
                return Some(std::mem::replace(&mut self.slots[at], slot));
            }
        }
        if self.slots.is_empty() || (self.len + 1) * 100 > self.buckets * MAX_LOAD_PCT {
            self.rebuild(buckets_for(self.len + 1));
        }
        let at = self.position(key);
        // The run's end: the guard guarantees an empty slot before the vector ends.
        let end = at
            + self.slots[at..]
                .iter()
                .position(|slot| !slot.is_occupied())
                .unwrap_or(self.slots.len() - at);
        self.keep_guard_after(end);
        self.slots.copy_within(at..end, at + 1);
        self.slots[at] = slot;
        self.len += 1;
        None
    }

    /// Removes the entry with `prefix`, returning it.
    pub(super) fn remove(&mut self, prefix: &DigestPrefix) -> Option<Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let mut at = self.position(prefix.order_key());
        let removed = *self.slots.get(at)?;
        if !(removed.is_occupied() && removed.prefix == *prefix) {
            return None;
        }
        // Backward shift: pull each following entry that sits past its home one place back.
        while let Some(next) = self.slots.get(at + 1).copied() {
            if !next.is_occupied() || home(next.order_key(), self.buckets) > at {
                break;
            }
            self.slots[at] = next;
            at += 1;
        }
        self.slots[at] = Slot::VACANT;
        self.len -= 1;
        if self.len == 0 {
            *self = Shard::default();
        } else if self.buckets > MIN_BUCKETS && self.len * 100 < self.buckets * MIN_LOAD_PCT {
            self.rebuild(buckets_for(self.len));
        }
        Some(removed)
    }

    /// Lays the entries out again over `buckets` buckets.
    fn rebuild(&mut self, buckets: usize) {
        let mut builder = ShardBuilder::new(buckets);
        for slot in self.occupied() {
            builder.push(*slot);
        }
        *self = builder.finish();
    }

    /// Makes sure slots after position `last` include [`GROUP`] empty ones.
    fn keep_guard_after(&mut self, last: usize) {
        ensure_guard(&mut self.slots, last);
    }
}

/// Extends `slots` with empty slots so that [`GROUP`] follow position `last`; grows by a little
/// at a time (never doubling), as these tails are short and rare.
fn ensure_guard(slots: &mut Vec<Slot>, last: usize) {
    let needed = last + 1 + GROUP;
    if slots.len() < needed {
        slots.reserve_exact(needed - slots.len() + GROUP);
        slots.resize(needed, Slot::VACANT);
    }
}

/// Builds one shard from entries given in increasing prefix order, each in O(1): an entry goes
/// to its home, or just after the previous one if that is further.
pub(super) struct ShardBuilder {
    slots: Vec<Slot>,
    buckets: usize,
    len: usize,
    next_free: usize,
}

impl ShardBuilder {
    /// A builder for `len` entries (sized at the build load for that many).
    pub(super) fn for_len(len: usize) -> Self {
        ShardBuilder::new(buckets_for(len))
    }

    fn new(buckets: usize) -> Self {
        let mut slots = Vec::with_capacity(buckets + 2 * GROUP);
        slots.resize(buckets + GROUP, Slot::VACANT);
        ShardBuilder {
            slots,
            buckets,
            len: 0,
            next_free: 0,
        }
    }

    /// Adds an entry whose prefix is larger than every one added before.
    pub(super) fn push(&mut self, slot: Slot) {
        let at = home(slot.order_key(), self.buckets).max(self.next_free);
        ensure_guard(&mut self.slots, at);
        self.slots[at] = slot;
        self.next_free = at + 1;
        self.len += 1;
    }

    /// The shard (an empty one holds no memory).
    pub(super) fn finish(self) -> Shard {
        if self.len == 0 {
            return Shard::default();
        }
        Shard {
            slots: self.slots,
            buckets: self.buckets,
            len: self.len,
        }
    }
}

#[cfg(test)]
#[path = "shards/tests.rs"]
mod tests;
