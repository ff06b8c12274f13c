//! Tests of the shard layout against a sorted model, including the paths a random table
//! rarely takes: runs that pass the last bucket, growth, shrinking and backward shifts.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn slot(prefix: [u8; 16], tag: u32) -> Slot {
    Slot {
        prefix: DigestPrefix::from_bytes(prefix),
        key_id: KeyId::from_bytes([tag as u8; 16]),
        expires_at: i64::from(tag),
        org: tag,
        grant: 0,
    }
}

/// A prefix in shard 7 from a 16-bit position: `spread` puts it over the whole shard, otherwise
/// every prefix shares the last home and the shard is one long run past its buckets.
fn prefix(n: u16, spread: bool) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0] = 7;
    if spread {
        bytes[1..3].copy_from_slice(&n.to_be_bytes());
    } else {
        bytes[1..3].copy_from_slice(&[0xff, 0xff]);
        bytes[14..16].copy_from_slice(&n.to_be_bytes());
    }
    bytes
}

/// Checks the layout's invariants: every entry at or after its home with no empty slot
/// between, increasing prefixes, the empty guard at the end, and the count.
fn check_invariants(shard: &Shard) {
    let mut previous: Option<u128> = None;
    let mut count = 0;
    for (at, slot) in shard.slots.iter().enumerate() {
        if !slot.is_occupied() {
            continue;
        }
        count += 1;
        let key = slot.order_key();
        assert!(previous.is_none_or(|p| p < key), "order broken at {at}");
        previous = Some(key);
        let home = home(key, shard.buckets);
        assert!(home <= at, "slot {at} sits before its home {home}");
        assert!(
            shard.slots[home..at].iter().all(Slot::is_occupied),
            "an empty slot between home {home} and {at}"
        );
    }
    assert_eq!(count, shard.len);
    if !shard.slots.is_empty() {
        let tail = &shard.slots[shard.slots.len() - GROUP..];
        assert!(tail.iter().all(|slot| !slot.is_occupied()), "guard missing");
    }
}

#[test]
fn slots_are_48_bytes() {
    assert_eq!(size_of::<Slot>(), 48);
}

#[test]
fn one_long_run_past_the_last_bucket_is_found_and_removed() {
    let mut shard = Shard::default();
    for n in (0..200).rev() {
        assert!(shard.upsert(slot(prefix(n, false), u32::from(n))).is_none());
        check_invariants(&shard);
    }
    assert!(
        shard.slots.len() > shard.buckets + 150,
        "the run passes the buckets"
    );
    for n in 0..200 {
        let found = shard.find(&DigestPrefix::from_bytes(prefix(n, false)));
        assert_eq!(found.map(|s| s.org), Some(u32::from(n)));
    }
    assert!(
        shard
            .find(&DigestPrefix::from_bytes(prefix(200, false)))
            .is_none()
    );
    for n in (0..200).step_by(2) {
        assert!(
            shard
                .remove(&DigestPrefix::from_bytes(prefix(n, false)))
                .is_some()
        );
        check_invariants(&shard);
    }
    assert_eq!(shard.len(), 100);
}

#[test]
fn an_all_ones_prefix_is_an_entry_like_any_other() {
    let mut shard = Shard::default();
    let top = [0xff; 16];
    shard.upsert(slot(top, 1));
    shard.upsert(slot(prefix(1, true), 2));
    assert_eq!(
        shard.find(&DigestPrefix::from_bytes(top)).map(|s| s.org),
        Some(1)
    );
    assert_eq!(
        shard.remove(&DigestPrefix::from_bytes(top)).map(|s| s.org),
        Some(1)
    );
    assert!(shard.find(&DigestPrefix::from_bytes(top)).is_none());
    check_invariants(&shard);
}

#[test]
fn the_builder_lays_out_what_inserts_would() {
    let mut builder = ShardBuilder::for_len(500);
    let mut inserted = Shard::default();
    for n in 0..500u16 {
        let s = slot(prefix(n.wrapping_mul(131), true), u32::from(n));
        inserted.upsert(s);
    }
    for s in inserted.occupied() {
        builder.push(*s);
    }
    let built = builder.finish();
    check_invariants(&built);
    let listed = |shard: &Shard| shard.occupied().map(|s| s.org).collect::<Vec<_>>();
    assert_eq!(listed(&built), listed(&inserted));
    let load = built.len() * 100 / built.buckets;
    assert!(
        (BUILD_LOAD_PCT - 1..=BUILD_LOAD_PCT).contains(&load),
        "{load}%"
    );
}

proptest! {
    /// Any sequence of upserts and removes leaves the shard equal to a sorted map, with its
    /// invariants, and its load within bounds once it holds enough to have grown.
    #[test]
    fn a_shard_behaves_like_a_sorted_map(
        ops in prop::collection::vec((any::<bool>(), 0u16..600, any::<bool>()), 1..400)
    ) {
        let mut shard = Shard::default();
        let mut model = BTreeMap::new();
        for (tag, (insert, n, spread)) in (0u32..).zip(ops) {
            let p = prefix(n, spread);
            if insert {
                let replaced = shard.upsert(slot(p, tag)).map(|s| s.org);
                prop_assert_eq!(replaced, model.insert(p, tag));
            } else {
                let removed = shard.remove(&DigestPrefix::from_bytes(p)).map(|s| s.org);
                prop_assert_eq!(removed, model.remove(&p));
            }
        }
        check_invariants(&shard);
        let listed: Vec<u32> = shard.occupied().map(|s| s.org).collect();
        prop_assert_eq!(listed, model.values().copied().collect::<Vec<_>>());
        for (p, tag) in &model {
            prop_assert_eq!(shard.find(&DigestPrefix::from_bytes(*p)).map(|s| s.org), Some(*tag));
        }
        if shard.buckets > MIN_BUCKETS {
            let load = shard.len() * 100 / shard.buckets;
            prop_assert!((MIN_LOAD_PCT - 1..=MAX_LOAD_PCT).contains(&load), "{}%", load);
        }
    }
}
