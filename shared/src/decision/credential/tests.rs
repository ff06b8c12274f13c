//! Unit tests of the credential reading.

use super::*;
use crate::key::{ApiKey, Environment};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn key() -> String {
    ApiKey::generate(&KeyPrefix::default(), Environment::Live)
        .expect("CSPRNG")
        .expose_secret()
        .to_owned()
}

fn base64(bytes: &[u8]) -> String {
    encode_base64(bytes)
}

fn read<'a>(x_api_key: Option<&'a str>, authorization: Option<&'a str>) -> Presented<'a> {
    let facts = RequestFacts {
        x_api_key,
        authorization,
        method: "GET",
        path: "/",
    };
    presented(&facts, &KeyPrefix::default())
}

#[test]
fn bearer_is_read_in_any_case_after_spaces_or_tabs() {
    let key = key();
    for value in [
        format!("Bearer {key}"),
        format!("bearer {key}"),
        format!("BEARER  {key}"),
        format!("Bearer\t{key}"),
        format!(" Bearer \t {key} "),
    ] {
        assert_eq!(
            read(None, Some(&value)),
            Presented::Key(key.as_str()),
            "{value:?}"
        );
        assert!(carries_a_key(&value, &KeyPrefix::default()), "{value:?}");
    }
}

#[test]
fn a_key_in_any_other_form_is_unreadable() {
    let (key, other) = (key(), key());
    for value in [
        format!("Bearer {key}, Bearer {other}"),
        format!("Bearer {key}, Bearer {key}"),
        format!("Bearer {key} {other}"),
        format!("Bearer {key},"),
        format!("Bearer {key}.signature"),
        format!("Bearer key={key}"),
        format!("Bearer x{key}"),
        format!("Token {key}"),
        format!("ApiKey key=\"{key}\""),
        key.clone(),
        format!("Basic {}", base64(format!("{key}:").as_bytes())),
        format!("basic {}", base64(format!("user:{key}").as_bytes())),
        format!(
            "Basic {}",
            base64(format!("user:{key}").as_bytes()).trim_end_matches('=')
        ),
        format!("Digest username=\"u\", response=\"{key}\""),
        // Two Authorization headers, joined by the runtime: the key in either.
        format!(
            "Basic {}, Basic dXNlcjpwYXNz",
            base64(format!("{key}:").as_bytes())
        ),
        format!(
            "Basic dXNlcjpwYXNz, Basic {}",
            base64(format!("user:{key}").as_bytes())
        ),
        // Base64 under another scheme, or in a JWT's claims.
        format!("Bearer {}", base64(key.as_bytes())),
        format!(
            "Bearer eyJhbGciOiJIUzI1NiJ9.{}.sig",
            base64(format!("{{\"key\":\"{key}\"}}").as_bytes()).trim_end_matches('=')
        ),
    ] {
        assert_eq!(read(None, Some(&value)), Presented::Unreadable, "{value:?}");
        assert_eq!(
            read(Some(&other), Some(&value)),
            Presented::Unreadable,
            "{value:?} next to x-api-key"
        );
        assert!(carries_a_key(&value, &KeyPrefix::default()), "{value:?}");
    }
}

/// Encodings a strict decoder refuses but lenient ones (an origin's) read: both alphabets in
/// one token, and bits past the last byte that are not zero.
#[test]
fn a_key_in_leniently_read_base64_is_found() {
    let key = key();
    // Three bytes that encode as `+/+/`, then `user:<key>`.
    let mut bytes = vec![0xfb, 0xff, 0xbf];
    bytes.extend_from_slice(format!("user:{key}").as_bytes());
    let standard = base64(&bytes);
    assert!(standard.starts_with("+/+/"), "{standard}");
    let mixed = standard.replacen('+', "-", 1).replacen('/', "_", 1);
    assert!(mixed.contains('-') && mixed.contains('+'), "{mixed}");

    // A length that leaves spare bits in the last character, which is then changed in them.
    let mut text = format!("{key}:").into_bytes();
    while text.len() % 3 != 1 {
        text.push(b'x');
    }
    let unpadded = base64(&text).trim_end_matches('=').to_owned();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = unpadded.bytes().last().expect("a character");
    let value = ALPHABET
        .iter()
        .position(|&c| c == last)
        .expect("in the alphabet");
    let spare_bits_set = format!(
        "{}{}",
        &unpadded[..unpadded.len() - 1],
        char::from(ALPHABET[value | 0b1111])
    );
    assert_ne!(spare_bits_set, unpadded);

    for value in [format!("Basic {mixed}"), format!("Basic {spare_bits_set}")] {
        assert!(carries_a_key(&value, &KeyPrefix::default()), "{value:?}");
        assert_eq!(read(None, Some(&value)), Presented::Unreadable, "{value:?}");
    }
}

#[test]
fn other_credentials_are_not_keyplane_keys() {
    let key = key();
    let truncated = format!("Bearer {}", &key[..20]);
    let other_prefix = format!("Bearer {}", key.replacen("sk_", "pk_", 1));
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "Basic not-base64!",
        "Bearer ",
        "Bearer",
        "",
        truncated.as_str(),
        other_prefix.as_str(),
    ] {
        assert!(!carries_a_key(value, &KeyPrefix::default()), "{value:?}");
        assert_ne!(read(None, Some(value)), Presented::Unreadable, "{value:?}");
    }
    assert_eq!(read(None, Some("Basic dXNlcjpwYXNz")), Presented::Nothing);
    assert_eq!(read(None, Some("Bearer ")), Presented::Nothing);
    assert_eq!(
        read(None, Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")),
        Presented::Key("eyJhbGciOiJIUzI1NiJ9.e30.sig")
    );
}

#[test]
fn x_api_key_comes_first_and_a_bearer_key_beside_it_is_not_unreadable() {
    let (key, other) = (key(), key());
    let bearer = format!("Bearer {other}");
    assert_eq!(
        read(Some(&key), Some(&bearer)),
        Presented::Key(key.as_str())
    );
    assert_eq!(
        read(Some(&format!(" {key} ")), None),
        Presented::Key(key.as_str())
    );
    assert_eq!(
        read(Some(""), Some(&bearer)),
        Presented::Key(other.as_str())
    );
    assert_eq!(read(Some("  "), None), Presented::Nothing);
    assert_eq!(read(None, None), Presented::Nothing);
}

#[test]
fn base64_in_both_alphabets_with_or_without_padding_is_decoded() {
    assert_eq!(
        decode_base64("dXNlcjpwYXNz").as_deref(),
        Some(&b"user:pass"[..])
    );
    assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
    assert_eq!(decode_base64("YWI").as_deref(), Some(&b"ab"[..]));
    assert_eq!(
        decode_base64("-_-_").as_deref(),
        decode_base64("+/+/").as_deref()
    );
    assert_eq!(decode_base64("YWJjZ"), None);
    assert_eq!(decode_base64("a b="), None);
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
}
