//! The key table's memory per key, measured with a counting allocator (native only: the
//! allocator is this test binary's global one).

#![cfg(not(target_arch = "wasm32"))]

use std::alloc::System;

use cap::Cap;
use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot};
mod support;

use support::build;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const KEYS: u32 = 1_000_000;

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
