//! Which credential a request presents: `x-api-key`, else the token of `Authorization: Bearer`.
//!
//! The scheme is case-insensitive and may be followed by spaces or tabs (`bearer <key>`,
//! `BEARER  <key>`, `Bearer\t<key>` all present `<key>`). An `Authorization` header that
//! carries a Keyplane key (well formed, checksum right, this deployment's prefix) anywhere
//! else — two credentials (`Bearer <a>, Bearer <b>`, which is also what two `Authorization`
//! headers become), another scheme (`Token <key>`, `Basic` with the key in the user or the
//! password, or any base64 token of the value), a decorated token (`Bearer <key>.sig`) — is
//! [`Presented::Unreadable`]: the edge refuses the request rather than guess which credential
//! counts, and never forwards the key.

use crate::key::{BODY_LEN, KeyPrefix, KeyText};

use super::RequestFacts;

/// The credential a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No credential: no `x-api-key`, no Bearer token.
    Nothing,
    /// The text to check as a key (`x-api-key`, else the Bearer token); it may be no key at all.
    Key(&'a str),
    /// `Authorization` carries a Keyplane key in a form the edge does not read as the
    /// credential (see the module docs); refused as an invalid key.
    Unreadable,
}

/// The credential `facts` present, for keys with `prefix`.
pub fn presented<'a>(facts: &RequestFacts<'a>, prefix: &KeyPrefix) -> Presented<'a> {
    let bearer = facts.authorization.and_then(bearer_token);
    let bearer_is_a_key = bearer.is_some_and(|token| KeyText::check(token, prefix).is_ok());
    let unreadable = !bearer_is_a_key
        && facts
            .authorization
            .is_some_and(|value| carries_a_key(value, prefix));
    if unreadable {
        return Presented::Unreadable;
    }
    match facts.x_api_key.map(str::trim).filter(|key| !key.is_empty()) {
        Some(key) => Presented::Key(key),
        None => bearer.map_or(Presented::Nothing, Presented::Key),
    }
}

/// The token of a Bearer `Authorization` value: the scheme (any case), one or more spaces or
/// tabs, the rest trimmed; `None` for another scheme or no token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let value = authorization.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether a header value carries a Keyplane key with `prefix` anywhere: in its text, or in
/// any of its tokens read as base64 (a `Basic` credential, another scheme's token, a JWT's
/// segment), however many credentials the value joins: `Basic <a>, Basic <b>` is what two
/// `Authorization` headers become, and a decoder given all of it would fail on the comma.
pub fn carries_a_key(value: &str, prefix: &KeyPrefix) -> bool {
    if contains_a_key(value.as_bytes(), prefix) {
        return true;
    }
    // A token shorter than this decodes to fewer bytes than a key has.
    let shortest = (key_len(prefix) * 4).div_ceil(3);
    value
        .split([',', ' ', '\t', '.'])
        .filter(|token| token.len() >= shortest)
        .any(|token| decode_base64(token).is_some_and(|decoded| contains_a_key(&decoded, prefix)))
}

/// The length of a key with `prefix`: `<prefix>_live_` (or `_test_`) and the body.
fn key_len(prefix: &KeyPrefix) -> usize {
    prefix.as_str().len() + "_live_".len() + BODY_LEN
}

/// Whether `text` holds a whole key of `prefix` (`<prefix>_live_` or `<prefix>_test_` and the
/// body), wherever it starts and whatever surrounds it.
fn contains_a_key(text: &[u8], prefix: &KeyPrefix) -> bool {
    let start_of_key = prefix.as_str().as_bytes();
    let key_len = key_len(prefix);
    if text.len() < key_len {
        return false;
    }
    (0..=text.len() - key_len).any(|start| {
        let window = &text[start..start + key_len];
        window.starts_with(start_of_key)
            && window[start_of_key.len()] == b'_'
            && std::str::from_utf8(window)
                .is_ok_and(|candidate| KeyText::check(candidate, prefix).is_ok())
    })
}

/// Standard or URL-safe base64, padding optional; `None` when `text` is not base64.
///
/// Written here rather than taken from the `base64` crate because it must be as lenient as the
/// most lenient decoder an origin may run: either alphabet's characters in one token (Node's
/// decoder reads `+` and `-` alike) and non-zero trailing bits are accepted, where a strict
/// decoder would refuse the token and so miss a key the origin would read.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }
    let digits = text.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut bits = 0u32;
        for (i, &digit) in group.iter().enumerate() {
            bits |= value(digit)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

/// Standard base64 with padding (tests build `Basic` credentials with it).
#[cfg(test)]
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]));
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests;
