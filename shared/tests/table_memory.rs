//! The key table's memory per key at 1M keys, measured with a counting allocator (native; the
//! same bound is checked in wasm32 by `wasm_table_memory.rs`): at most 64 bytes per key held,
//! and at most 64 at the peak of building it, a shard's resize included; a snapshot encoded in
//! pieces costs one piece beyond the table.

#![cfg(not(target_arch = "wasm32"))]

use std::alloc::System;

use cap::Cap;
use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot, encode_snapshot_in_pieces};
mod support;

use support::build;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const KEYS: u32 = 1_000_000;
/// The bound, for the table held and for the peak of building or decoding it.
const MAX_BYTES_PER_KEY: f64 = 64.0;
/// The piece size the edge store writes snapshots in.
const PIECE: usize = 1 << 20;

fn per_key(bytes: usize) -> f64 {
    bytes as f64 / f64::from(KEYS)
}

/// One test function: the allocator is process-wide, so concurrent tests would blur the counts.
#[test]
fn a_large_table_holds_and_peaks_under_64_bytes_per_key_built_or_decoded() {
    // `max_allocated` never goes down, so a phase's peak reads as at most `max - before`: an
    // upper bound, which can make this test fail wrongly but never pass wrongly.
    let before = ALLOCATOR.allocated();
    let table = build(KEYS);
    let held = ALLOCATOR.allocated() - before;
    let peak = ALLOCATOR.max_allocated() - before;
    eprintln!(
        "{KEYS} keys built by changes: {held} heap bytes ({:.1} per key), peak {:.1} per key",
        per_key(held),
        per_key(peak)
    );
    assert!(
        per_key(held) <= MAX_BYTES_PER_KEY,
        "built: {:.1}",
        per_key(held)
    );
    assert!(
        per_key(peak) <= MAX_BYTES_PER_KEY,
        "build peak: {:.1}",
        per_key(peak)
    );
    let estimate = table.heap_bytes() as f64;
    let error = (estimate - held as f64).abs() / held as f64;
    assert!(error < 0.05, "heap_bytes {estimate} vs allocator {held}");

    // Encoded in 1 MiB pieces (as the edge store writes it to storage), a snapshot costs one
    // piece beyond the table, not its 48 MB. Measured before anything peaks higher.
    let before = ALLOCATOR.allocated();
    let mut encoded_len = 0;
    encode_snapshot_in_pieces(&table, PIECE, |piece| {
        encoded_len += piece.len();
        Ok::<(), ()>(())
    })
    .expect("the sink never fails");
    let pieces_peak = ALLOCATOR.max_allocated() - before;
    eprintln!("encoding in pieces: {encoded_len} bytes, peak {pieces_peak} bytes above the table");
    assert!(
        pieces_peak <= 2 * PIECE,
        "encoding in pieces held {pieces_peak} bytes"
    );

    let snapshot = encode_snapshot(&table);
    assert_eq!(snapshot.len(), encoded_len);
    let snapshot_per_key = per_key(snapshot.len());
    eprintln!(
        "snapshot: {} bytes, {snapshot_per_key:.1} per key",
        snapshot.len()
    );
    assert!(
        snapshot_per_key < 48.1,
        "snapshot: {snapshot_per_key:.2} per key"
    );
    drop(table);

    let before = ALLOCATOR.allocated();
    let decoded = decode_snapshot(&snapshot).expect("own snapshot");
    let held = ALLOCATOR.allocated() - before;
    let peak = ALLOCATOR.max_allocated() - before;
    assert_eq!(decoded.len(), KEYS as usize);
    eprintln!(
        "decoded: {:.1} per key held, peak at most {:.1}",
        per_key(held),
        per_key(peak)
    );
    assert!(
        per_key(held) <= MAX_BYTES_PER_KEY,
        "decoded: {:.1}",
        per_key(held)
    );
    assert!(
        per_key(peak) <= MAX_BYTES_PER_KEY,
        "decode peak: {:.1}",
        per_key(peak)
    );
}
