//! A key's text checked where it lies ([`KeyText`]): the edge checks the header's own text
//! for every request, so this is the hot path's first step, written to do little: the prefix
//! compared byte by byte, the environment read without a search, the alphabet checked
//! without branches and the checksum decoded in 64-bit arithmetic. A property test
//! (`shared/tests/properties.rs`) holds it to a plain reading of the format.

use std::fmt;

use super::{BODY_LEN, CHECKSUM_LEN, Environment, KeyParseError, KeyPrefix, MAX_KEY_LEN};
use crate::base62;

/// A key's text that passed [`KeyText::check`]: the shape and checksum of a key, borrowed from
/// where it was read (the edge checks the header's own text, copying and keeping nothing).
#[derive(Clone, Copy)]
pub struct KeyText<'a> {
    text: &'a str,
    env: Environment,
}

impl<'a> KeyText<'a> {
    /// Checks `input` strictly against the deployment's prefix, as
    /// [`ApiKey::parse`](super::ApiKey::parse) does, without copying it.
    ///
    /// Work is bounded by [`MAX_KEY_LEN`] whatever the input size.
    pub fn check(input: &'a str, prefix: &KeyPrefix) -> Result<Self, KeyParseError> {
        if input.len() > MAX_KEY_LEN {
            return Err(KeyParseError::TooLong { found: input.len() });
        }
        let wrong_prefix = || KeyParseError::WrongPrefix {
            expected: prefix.as_str().to_owned(),
        };
        let rest = strip_key_prefix(input, prefix).ok_or_else(wrong_prefix)?;
        let (env, body) = split_environment(rest)?;
        if body.len() != BODY_LEN {
            return Err(KeyParseError::WrongLength { found: body.len() });
        }
        if !base62::all_digits(body.as_bytes()) {
            let position = body.bytes().position(|c| base62::digit_value(c).is_none());
            return Err(KeyParseError::InvalidCharacter {
                position: position.unwrap_or_default(),
            });
        }
        let (signed, checksum) = input.as_bytes().split_at(input.len() - CHECKSUM_LEN);
        let expected = u64::from(crc32fast::hash(signed));
        let checksum: &[u8; CHECKSUM_LEN] = checksum
            .try_into()
            .map_err(|_| KeyParseError::ChecksumMismatch)?;
        if base62::decode_six(checksum) != Some(expected) {
            return Err(KeyParseError::ChecksumMismatch);
        }
        Ok(KeyText { text: input, env })
    }

    /// A text known to be a key of `env`: an [`ApiKey`](super::ApiKey)'s own, checked when it was parsed or
    /// generated.
    pub(super) fn checked(text: &'a str, env: Environment) -> Self {
        KeyText { text, env }
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        self.env
    }

    /// The full secret: only to digest it.
    pub fn expose_secret(&self) -> &'a str {
        self.text
    }
}

/// Prints nothing of the secret (the text is a live key).
impl fmt::Debug for KeyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyText")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// `input` after `<prefix>_`, compared byte by byte: a prefix is at most
/// [`MAX_PREFIX_LEN`](super::MAX_PREFIX_LEN) bytes, too short for a library comparison to pay.
fn strip_key_prefix<'a>(input: &'a str, prefix: &KeyPrefix) -> Option<&'a str> {
    let prefix = prefix.as_str().as_bytes();
    let bytes = input.as_bytes();
    let matches = bytes.len() > prefix.len()
        && bytes.iter().zip(prefix).all(|(a, b)| a == b)
        && bytes[prefix.len()] == b'_';
    // The byte after the prefix is ASCII, so this is a character boundary.
    matches.then(|| input.get(prefix.len() + 1..)).flatten()
}

/// `<env>_<body>` split into the environment and the body. Both labels are four letters, so a
/// key is read without searching for the separator; anything else takes the general split,
/// which says what is wrong.
fn split_environment(rest: &str) -> Result<(Environment, &str), KeyParseError> {
    let known = match rest.as_bytes().get(..5) {
        Some(b"live_") => Some(Environment::Live),
        Some(b"test_") => Some(Environment::Test),
        _ => None,
    };
    if let Some(env) = known {
        return Ok((env, rest.get(5..).unwrap_or_default()));
    }
    let (label, body) = rest
        .split_once('_')
        .ok_or(KeyParseError::UnknownEnvironment)?;
    let env = Environment::from_label(label).ok_or(KeyParseError::UnknownEnvironment)?;
    Ok((env, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sk() -> KeyPrefix {
        KeyPrefix::default()
    }

    #[test]
    fn the_environment_is_read_the_same_with_or_without_a_search() {
        for env in [Environment::Live, Environment::Test] {
            let rest = format!("{}_body", env.as_str());
            assert_eq!(split_environment(&rest), Ok((env, "body")));
        }
        for (rest, wrong) in [
            ("live", KeyParseError::UnknownEnvironment),
            ("liv_e_body", KeyParseError::UnknownEnvironment),
            ("lives_body", KeyParseError::UnknownEnvironment),
            ("prod_body", KeyParseError::UnknownEnvironment),
        ] {
            assert_eq!(split_environment(rest), Err(wrong), "{rest}");
        }
        assert_eq!(split_environment("live_"), Ok((Environment::Live, "")));
        assert_eq!(strip_key_prefix("sk_live", &sk()), Some("live"));
        assert_eq!(strip_key_prefix("sk_", &sk()), Some(""));
        for refused in ["sk", "s", "", "skx_live", "sklive", "pk_live", "é_live"] {
            assert_eq!(strip_key_prefix(refused, &sk()), None, "{refused}");
        }
    }
}
