//! The secret-scanning patterns the README publishes match every key Keyplane makes, in text
//! as a scanner sees it, and nothing the parser would take for a key without its checksum: the
//! pattern matches the shape, the checksum decides.

use keyplane_control_plane::leaks::patterns::{ANY_PREFIX_PATTERN, DEFAULT_PREFIX_PATTERN};
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use regex::Regex;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[test]
fn generated_keys_match_the_published_patterns_in_surrounding_text() {
    let default_prefix = Regex::new(DEFAULT_PREFIX_PATTERN).expect("valid pattern");
    let any_prefix = Regex::new(ANY_PREFIX_PATTERN).expect("valid pattern");
    let custom: KeyPrefix = "acme2".parse().expect("prefix");
    for n in 0..2_000 {
        let environment = if n % 2 == 0 {
            Environment::Live
        } else {
            Environment::Test
        };
        let key = ApiKey::generate(&KeyPrefix::default(), environment).expect("CSPRNG");
        let text = key.expose_secret();
        let embedded = format!("export API_KEY=\"{text}\"\n");
        for pattern in [&default_prefix, &any_prefix] {
            let found = pattern.find(&embedded).map(|m| m.as_str());
            assert_eq!(found, Some(text), "{pattern} missed a key");
        }
        let other = ApiKey::generate(&custom, environment).expect("CSPRNG");
        assert!(any_prefix.is_match(other.expose_secret()));
        assert!(!default_prefix.is_match(other.expose_secret()));
    }
    // A key run into more characters is not a key.
    let key = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    assert!(!default_prefix.is_match(&format!("{}x", key.expose_secret())));
}

#[test]
fn strings_of_the_keys_shape_with_a_bad_checksum_match_the_pattern_and_are_refused_by_the_parser() {
    let pattern = Regex::new(DEFAULT_PREFIX_PATTERN).expect("valid pattern");
    let prefix = KeyPrefix::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        BASE62[(seed % 62) as usize] as char
    };
    let mut refused = 0;
    for _ in 0..10_000 {
        let body: String = (0..38).map(|_| next()).collect();
        let text = format!("sk_live_{body}");
        assert!(pattern.is_match(&text), "{text}");
        if ApiKey::parse(&text, &prefix).is_err() {
            refused += 1;
        }
    }
    // 38 random characters carry a valid CRC32 about once in 62^6 tries.
    assert_eq!(refused, 10_000);
    // A real key with one character of its random part changed is refused too.
    let key = ApiKey::generate(&prefix, Environment::Live).expect("CSPRNG");
    let mut text = key.expose_secret().to_owned().into_bytes();
    text[8] = if text[8] == b'A' { b'B' } else { b'A' };
    let text = String::from_utf8(text).expect("ASCII");
    assert!(pattern.is_match(&text));
    assert!(ApiKey::parse(&text, &prefix).is_err());
}

#[test]
fn the_readme_publishes_these_patterns() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    for pattern in [DEFAULT_PREFIX_PATTERN, ANY_PREFIX_PATTERN] {
        assert!(readme.contains(pattern), "the README lacks {pattern}");
    }
}
