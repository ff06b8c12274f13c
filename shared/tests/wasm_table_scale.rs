//! Table scale in wasm32 (V8, the engine workerd runs): heap bytes per key and snapshot load
//! (decode) time at 100k and 1M keys, as an edge isolate pays them.
//!
//! A benchmark, not a test: ignored by default; `cargo xtask bench-edge` runs it with
//! `--include-ignored` under wasm-bindgen-test-runner (node). Heap bytes come from a counting
//! global allocator; times are the median of 5 decodes, from `Date.now()` (ms resolution).
//! It asserts only the memory budget the design sets (under 100 bytes per key).

#![cfg(target_arch = "wasm32")]

mod support;

use std::alloc::System;

use cap::Cap;
use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

#[wasm_bindgen_test]
#[ignore = "benchmark: run `cargo xtask bench-edge`"]
fn snapshot_load_time_and_memory_per_key_in_wasm() {
    for keys in [100_000u32, 1_000_000] {
        let bytes = encode_snapshot(&support::build(keys));
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
        console_log!(
            "wasm32 table, {keys} keys: snapshot {:.1} MB, decode median {:.0} ms (min {:.0}, max {:.0}), heap {per_key:.1} bytes/key",
            bytes.len() as f64 / 1e6,
            times[2],
            times[0],
            times[4]
        );
        assert!(per_key < 100.0, "{per_key:.1} bytes per key in wasm32");
    }
}
