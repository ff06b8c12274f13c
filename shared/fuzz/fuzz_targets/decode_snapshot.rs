//! Snapshot decoding must never panic; what it accepts must re-encode to the same bytes.
//!
//! Half of the inputs get a valid header and CRC32 so the fuzzer reaches the structural checks.

#![no_main]

use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sealed = seal(data);
    for input in [data, &sealed] {
        if let Ok(table) = decode_snapshot(input) {
            // Canonical form: entries sorted, interned values numbered by first use. Re-encoding
            // must decode to an equal table.
            let again = decode_snapshot(&encode_snapshot(&table)).expect("own encoding decodes");
            assert!(again == table);
        }
    }
});

fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = b"KPSN\x01".to_vec();
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}
