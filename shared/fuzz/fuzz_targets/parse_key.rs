//! Key parsing must never panic, and whatever it accepts must round-trip and have the documented shape.

#![no_main]

use keyplane_shared::key::BODY_LEN;
use keyplane_shared::{ApiKey, KeyPrefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let prefix = KeyPrefix::default();
    if let Ok(key) = ApiKey::parse(text, &prefix) {
        assert_eq!(key.expose_secret(), text);
        assert_eq!(text.len(), "sk_live_".len() + BODY_LEN);
        assert!(!format!("{key:?}").contains(text));
    }
});
