//! The API key format: `<prefix>_<env>_<body>`, generation, strict parsing and the truncated form.
//!
//! The body is 32 base62 characters from the OS CSPRNG (~190 bits) followed by a 6-character
//! base62 CRC32 of everything before it, so typos and garbage are rejected without a lookup and
//! secret scanners can match keys with few false positives. The parsed [`ApiKey`] is the only
//! holder of the secret: it never prints it (`Debug` shows the truncated form) and wipes its
//! memory on drop.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::base62;

mod text;
pub use text::KeyText;

/// Number of random base62 characters in a key body.
pub const RANDOM_LEN: usize = 32;
/// Number of checksum characters at the end of a key body.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of a key body (random part plus checksum).
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 16;
/// Inputs longer than this are rejected before any other work (a key is at most 60 bytes).
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + 4 + 1 + BODY_LEN;

/// Which environment a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Environment {
    /// Production traffic.
    Live = 1,
    /// Test traffic; an edge can be configured to refuse it.
    Test = 2,
}

impl Environment {
    /// The label used in keys and in the API (`live` / `test`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// The environment for a label, if it is one.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }

    /// The wire byte of this environment (see the table codec).
    pub(crate) const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The environment for a wire byte.
    pub(crate) const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Environment::Live),
            2 => Some(Environment::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment's key prefix (default `sk`): 1 to 16 lowercase ASCII letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(Box<str>);

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a key prefix is 1 to {MAX_PREFIX_LEN} lowercase ASCII letters or digits")]
pub struct InvalidPrefix;

impl KeyPrefix {
    /// Validates a prefix.
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(KeyPrefix(prefix.into()))
        } else {
            Err(InvalidPrefix)
        }
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix("sk".into())
    }
}

impl FromStr for KeyPrefix {
    type Err = InvalidPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyPrefix::new(s)
    }
}

/// Precisely what is wrong with a string that was offered as a key.
///
/// These details are for operators, logs and the CLI; an edge answers every one of them with the
/// same `invalid_api_key` response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// Longer than any key can be; nothing else was examined.
    #[error("too long to be a key ({found} bytes, at most {MAX_KEY_LEN})")]
    TooLong {
        /// Length of the input in bytes.
        found: usize,
    },
    /// Does not start with `<prefix>_`.
    #[error("does not start with the expected prefix `{expected}_`")]
    WrongPrefix {
        /// The deployment's prefix.
        expected: String,
    },
    /// The environment segment is not `live` or `test`.
    #[error("unknown environment (expected `live` or `test`)")]
    UnknownEnvironment,
    /// The body after `<prefix>_<env>_` has the wrong length.
    #[error("the key body has {found} characters, expected {BODY_LEN}")]
    WrongLength {
        /// Length of the body in bytes.
        found: usize,
    },
    /// The body has a character outside `0-9A-Za-z`.
    #[error("invalid character at position {position} of the key body")]
    InvalidCharacter {
        /// Zero-based byte offset in the body.
        position: usize,
    },
    /// The last six characters are not the checksum of the rest: a typo or a made-up key.
    #[error("checksum mismatch: the key was mistyped or truncated")]
    ChecksumMismatch,
}

/// A well-formed API key. Holds the secret; prints only its truncated form.
pub struct ApiKey {
    text: Zeroizing<String>,
    env: Environment,
    /// Byte offset where the body starts.
    body_start: usize,
}

impl ApiKey {
    /// Generates a new key from the OS CSPRNG.
    pub fn generate(prefix: &KeyPrefix, env: Environment) -> Result<Self, getrandom::Error> {
        let mut random = Zeroizing::new([0u8; RANDOM_LEN]);
        fill_base62(&mut random[..])?;
        Ok(Self::from_random_body(prefix, env, &random))
    }

    /// Builds a key from 32 base62 random characters (used by [`ApiKey::generate`] and tests).
    fn from_random_body(prefix: &KeyPrefix, env: Environment, random: &[u8; RANDOM_LEN]) -> Self {
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_LEN));
        text.push_str(prefix.as_str());
        text.push('_');
        text.push_str(env.as_str());
        text.push('_');
        let body_start = text.len();
        // The random part is base62 by construction, so it is ASCII.
        for &c in random {
            text.push(char::from(c));
        }
        let mut checksum = [0u8; CHECKSUM_LEN];
        base62::encode_fixed(u128::from(crc32fast::hash(text.as_bytes())), &mut checksum);
        for c in checksum {
            text.push(char::from(c));
        }
        ApiKey {
            text,
            env,
            body_start,
        }
    }

    /// Parses a key strictly against the deployment's prefix.
    ///
    /// Work is bounded by [`MAX_KEY_LEN`] whatever the input size.
    pub fn parse(input: &str, prefix: &KeyPrefix) -> Result<Self, KeyParseError> {
        let checked = KeyText::check(input, prefix)?;
        Ok(ApiKey {
            text: Zeroizing::new(input.to_owned()),
            env: checked.environment(),
            body_start: input.len() - BODY_LEN,
        })
    }

    /// The key as checked text, borrowed.
    pub fn as_text(&self) -> KeyText<'_> {
        KeyText::checked(&self.text, self.env)
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        self.env
    }

    /// The full secret. Call only to show it once to its owner or to compute its digest or hash.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The form shown everywhere after creation: `sk_live_abc123...GHIJ`.
    pub fn truncated(&self) -> String {
        let body = &self.text[self.body_start..];
        format!(
            "{}{}...{}",
            &self.text[..self.body_start],
            &body[..6],
            &body[BODY_LEN - 4..]
        )
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("truncated", &self.truncated())
            .finish()
    }
}

/// Fills `out` with uniformly distributed base62 characters from the OS CSPRNG.
///
/// Rejection sampling: bytes at or above 248 (= 4 × 62) are discarded so `% 62` is unbiased.
fn fill_base62(out: &mut [u8]) -> Result<(), getrandom::Error> {
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut filled = 0;
    while filled < out.len() {
        getrandom::fill(&mut pool[..])?;
        for &byte in pool.iter() {
            if filled == out.len() {
                break;
            }
            if byte < 248 {
                out[filled] = base62::ALPHABET[usize::from(byte % 62)];
                filled += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sk() -> KeyPrefix {
        KeyPrefix::default()
    }

    fn fixed_key() -> ApiKey {
        ApiKey::from_random_body(
            &sk(),
            Environment::Live,
            b"abc123DEFGHIJKLMNOPQRSTUVWXYZxyz",
        )
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = ApiKey::generate(&sk(), Environment::Live).expect("CSPRNG available");
        let text = key.expose_secret();
        assert!(text.starts_with("sk_live_"));
        assert_eq!(text.len(), "sk_live_".len() + BODY_LEN);
        assert!(
            text["sk_live_".len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric())
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = ApiKey::generate(&sk(), Environment::Test).expect("CSPRNG available");
        let b = ApiKey::generate(&sk(), Environment::Test).expect("CSPRNG available");
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn truncated_form_shows_first_six_and_last_four_of_the_body() {
        let key = fixed_key();
        let text = key.expose_secret();
        let expected = format!("sk_live_abc123...{}", &text[text.len() - 4..]);
        assert_eq!(key.truncated(), expected);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = fixed_key();
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.expose_secret()));
        assert!(!debug.contains("DEFGHIJKLMNOP"));
        assert!(debug.contains(&key.truncated()));
    }

    #[test]
    fn parse_accepts_a_generated_key_and_keeps_its_environment() {
        let key = fixed_key();
        let parsed = ApiKey::parse(key.expose_secret(), &sk()).expect("valid key");
        assert_eq!(parsed.environment(), Environment::Live);
        assert_eq!(parsed.expose_secret(), key.expose_secret());
    }

    #[test]
    fn parse_says_precisely_what_is_wrong() {
        let good = fixed_key();
        let good = good.expose_secret();
        let body = &good["sk_live_".len()..];
        let cases: Vec<(String, KeyParseError)> = vec![
            (
                format!("pk_live_{body}"),
                KeyParseError::WrongPrefix {
                    expected: "sk".into(),
                },
            ),
            (
                format!("sklive_{body}"),
                KeyParseError::WrongPrefix {
                    expected: "sk".into(),
                },
            ),
            (format!("sk_prod_{body}"), KeyParseError::UnknownEnvironment),
            ("sk_live".into(), KeyParseError::UnknownEnvironment),
            ("sk_live_".into(), KeyParseError::WrongLength { found: 0 }),
            (
                format!("sk_live_{}", &body[1..]),
                KeyParseError::WrongLength {
                    found: BODY_LEN - 1,
                },
            ),
            (
                format!("sk_live_{body}x"),
                KeyParseError::WrongLength {
                    found: BODY_LEN + 1,
                },
            ),
            (
                format!("sk_live_{}-{}", &body[..3], &body[4..]),
                KeyParseError::InvalidCharacter { position: 3 },
            ),
            (
                format!("sk_live_{}é{}", &body[..3], &body[5..]),
                KeyParseError::InvalidCharacter { position: 3 },
            ),
            (
                format!("sk_live_{}", "0".repeat(BODY_LEN)),
                KeyParseError::ChecksumMismatch,
            ),
            ("x".repeat(10_000), KeyParseError::TooLong { found: 10_000 }),
            (
                String::new(),
                KeyParseError::WrongPrefix {
                    expected: "sk".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            let got = ApiKey::parse(&input, &sk()).map(|_| ());
            assert_eq!(got, Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn a_test_key_is_not_a_live_key_with_another_label() {
        let live = fixed_key();
        let relabelled = live.expose_secret().replacen("_live_", "_test_", 1);
        assert_eq!(
            ApiKey::parse(&relabelled, &sk()).map(|_| ()),
            Err(KeyParseError::ChecksumMismatch)
        );
    }

    #[test]
    fn custom_prefixes_are_validated() {
        assert!(KeyPrefix::new("acme2").is_ok());
        for bad in ["", "Acme", "a_b", "a-b", "seventeen_chars_x"] {
            assert_eq!(KeyPrefix::new(bad), Err(InvalidPrefix), "{bad:?}");
        }
        let prefix = KeyPrefix::new("acme").expect("valid");
        let key = ApiKey::generate(&prefix, Environment::Test).expect("CSPRNG");
        assert!(key.expose_secret().starts_with("acme_test_"));
        assert!(ApiKey::parse(key.expose_secret(), &prefix).is_ok());
        assert!(matches!(
            ApiKey::parse(key.expose_secret(), &sk()),
            Err(KeyParseError::WrongPrefix { .. })
        ));
    }
}
