//! Table scale in wasm32 (V8, the engine workerd runs), as an edge isolate pays it.
//!
//! The memory bound is a test, run in CI with the wasm32 tests: at 100k keys the table holds
//! at most 64 bytes per key, built by changes or decoded, and peaks at most there (a shard's
//! resize included). The timing at 100k and 1M keys is a benchmark, ignored by default;
//! `cargo xtask bench-edge` runs it with `--include-ignored` under wasm-bindgen-test-runner
//! (node). Heap bytes come from a counting global allocator; times are the median of 5
//! decodes, from `Date.now()` (ms resolution).

#![cfg(target_arch = "wasm32")]

mod support;

use std::alloc::System;

use cap::Cap;
use keyplane_shared::table::codec::{SnapshotDecoder, decode_snapshot, encode_snapshot};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The bound, for the table held and for the peak of building or decoding it.
const MAX_BYTES_PER_KEY: f64 = 64.0;

/// One test for the bound: the allocator is process-wide. `max_allocated` never goes down, so
/// a phase's peak reads as at most `max - before`: an upper bound, never an underestimate.
#[wasm_bindgen_test]
fn a_table_of_100k_keys_holds_and_peaks_under_64_bytes_per_key_in_wasm() {
    const KEYS: u32 = 100_000;
    let per_key = |bytes: usize| bytes as f64 / f64::from(KEYS);
    let before = ALLOCATOR.allocated();
    let table = support::build(KEYS);
    let (held, peak) = (
        ALLOCATOR.allocated() - before,
        ALLOCATOR.max_allocated() - before,
    );
    console_log!(
        "wasm32, {KEYS} keys built by changes: {:.1} bytes/key held, peak {:.1}",
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
    let bytes = encode_snapshot(&table);
    drop(table);
    let before = ALLOCATOR.allocated();
    let decoded = decode_snapshot(&bytes).expect("own snapshot decodes");
    let (held, peak) = (
        ALLOCATOR.allocated() - before,
        ALLOCATOR.max_allocated() - before,
    );
    assert_eq!(decoded.len(), KEYS as usize);
    console_log!(
        "wasm32, {KEYS} keys decoded: {:.1} bytes/key held, peak at most {:.1}",
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

#[wasm_bindgen_test]
#[ignore = "benchmark: run `cargo xtask bench-edge`"]
fn snapshot_load_time_and_memory_per_key_in_wasm() {
    for keys in [100_000u32, 1_000_000] {
        let bytes = encode_snapshot(&support::build(keys));
        let started = js_sys::Date::now();
        let crc = crc32fast::hash(&bytes);
        let crc_ms = js_sys::Date::now() - started;
        let started = js_sys::Date::now();
        let xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
        let xxh3_ms = js_sys::Date::now() - started;
        let mut times = Vec::new();
        let mut per_key = 0.0;
        for _ in 0..5 {
            let before = ALLOCATOR.allocated();
            let started = js_sys::Date::now();
            let table = decode_snapshot(&bytes).expect("own snapshot decodes");
            times.push(js_sys::Date::now() - started);
            per_key = (ALLOCATOR.allocated() - before) as f64 / f64::from(keys);
            assert_eq!(table.len(), keys as usize);
        }
        times.sort_by(f64::total_cmp);
        // As an isolate receives it: 1 MiB pieces, checksum computed as they arrive.
        let mut piece_times = Vec::new();
        for _ in 0..5 {
            let started = js_sys::Date::now();
            let mut decoder = SnapshotDecoder::new();
            for piece in bytes.chunks(1 << 20) {
                decoder.push(piece).expect("own snapshot");
            }
            let (table, _) = decoder.finish().expect("own snapshot decodes");
            piece_times.push(js_sys::Date::now() - started);
            assert_eq!(table.len(), keys as usize);
        }
        piece_times.sort_by(f64::total_cmp);
        console_log!(
            "wasm32 table, {keys} keys: decode in 1 MiB pieces median {:.0} ms (min {:.0}, max {:.0})",
            piece_times[2],
            piece_times[0],
            piece_times[4]
        );
        console_log!(
            "wasm32 table, {keys} keys: snapshot {:.1} MB, decode median {:.0} ms (min {:.0}, max {:.0}; of which its XXH3-64 checksum {xxh3_ms:.0} ms, {xxh3:016x}, where a CRC32 would take {crc_ms:.0} ms, {crc:08x}), heap {per_key:.1} bytes/key",
            bytes.len() as f64 / 1e6,
            times[2],
            times[0],
            times[4]
        );
        assert!(
            per_key <= MAX_BYTES_PER_KEY,
            "{per_key:.1} bytes per key in wasm32"
        );
    }
}
