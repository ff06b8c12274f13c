//! Change-batch decoding must never panic; accepted batches re-encode to the same bytes and apply without panicking.

#![no_main]

use keyplane_shared::KeyTable;
use keyplane_shared::table::codec::{decode_changes, encode_changes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sealed = b"KPCB\x01".to_vec();
    sealed.extend_from_slice(data);
    let crc = crc32fast::hash(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    for input in [data, &sealed] {
        if let Ok(changes) = decode_changes(input) {
            // Batches have one encoding too: re-encoding gives back the very same bytes.
            assert!(encode_changes(&changes) == input);
            let mut table = KeyTable::new();
            for change in &changes {
                let _ = table.apply(change);
            }
        }
    }
});
