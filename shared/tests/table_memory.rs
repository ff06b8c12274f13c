//! The key table's memory per key, measured with a counting allocator (native only: the
//! allocator is this test binary's global one).

#![cfg(not(target_arch = "wasm32"))]

use std::alloc::System;

use cap::Cap;
use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot};
use keyplane_shared::{
    Change, ChangeOp, Environment, KeyId, KeyStatus, KeyTable, LookupDigest, OrgId, ScopeSet,
    TableEntry,
};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const KEYS: u32 = 1_000_000;

fn pseudo_random_digest(n: u32) -> LookupDigest {
    // SplitMix64 spreads the index over all bytes, like an HMAC would.
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut z = u64::from(n)
            .wrapping_mul(4)
            .wrapping_add(i as u64)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    LookupDigest::from_bytes(bytes)
}

fn build(keys: u32) -> KeyTable {
    let scope_sets: Vec<ScopeSet> = [
        &["contacts:read"][..],
        &["contacts:*", "triggers:read"],
        &["admin:full"],
    ]
    .iter()
    .map(|s| ScopeSet::parse(s.iter()).expect("valid"))
    .collect();
    let mut table = KeyTable::with_capacity(keys as usize);
    for n in 0..keys {
        let entry = TableEntry {
            digest: pseudo_random_digest(n),
            key_id: KeyId::from_bytes((u128::from(n) << 64).to_be_bytes()),
            org_id: OrgId::from_bytes([(n % 1_000) as u8; 16]),
            env: Environment::Live,
            status: KeyStatus::Active,
            expires_at: None,
            scopes: scope_sets[(n % 3) as usize].clone(),
            rate_limit: None,
        };
        table
            .apply(&Change {
                seq: u64::from(n) + 1,
                op: ChangeOp::Upsert(entry),
            })
            .expect("in order");
    }
    table
}

/// One test function: the allocator is process-wide, so concurrent tests would blur the counts.
#[test]
fn a_large_table_costs_under_100_bytes_per_key_built_or_decoded() {
    let before = ALLOCATOR.allocated();
    let table = build(KEYS);
    let measured = ALLOCATOR.allocated() - before;
    let per_key = measured as f64 / f64::from(KEYS);
    eprintln!("{KEYS} keys: {measured} heap bytes, {per_key:.1} bytes per key");
    assert!(per_key < 100.0, "built: {per_key:.1} bytes per key");
    let estimate = table.heap_bytes() as f64;
    let error = (estimate - measured as f64).abs() / measured as f64;
    assert!(
        error < 0.05,
        "heap_bytes {estimate} vs allocator {measured}"
    );

    let snapshot = encode_snapshot(&table);
    assert!(
        snapshot.len() < KEYS as usize * 80,
        "snapshot is {} bytes",
        snapshot.len()
    );
    drop(table);
    let before = ALLOCATOR.allocated();
    let decoded = decode_snapshot(&snapshot).expect("own snapshot");
    let measured = ALLOCATOR.allocated() - before;
    assert_eq!(decoded.len(), KEYS as usize);
    let per_key = measured as f64 / f64::from(KEYS);
    assert!(per_key < 100.0, "decoded: {per_key:.1} bytes per key");
}
