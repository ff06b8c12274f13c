//! Fixed-width base62 (`0-9A-Za-z`) encoding used by key bodies, checksums and ids.
//!
//! Fixed width keeps every encoded value the same length, so a key or id has one exact shape that
//! parsers and secret scanners can match.

/// The alphabet, in digit order.
pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of one base62 character, or `None` outside the alphabet.
pub(crate) const fn digit_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

/// Encodes `value` as exactly `out.len()` base62 digits, most significant first.
///
/// `out` must be long enough for `value`; callers use widths sized for the type's maximum
/// (6 digits for `u32`, 22 for `u128`), so no digit is ever lost.
pub(crate) fn encode_fixed(mut value: u128, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    debug_assert_eq!(value, 0, "base62 width too small for value");
}

/// Decodes base62 digits into a `u128`; `None` on a character outside the alphabet or overflow.
pub(crate) fn decode(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &c| {
        let d = digit_value(c)?;
        acc.checked_mul(62)?.checked_add(u128::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn fixed_width_round_trips_extremes() {
        for value in [0u128, 1, 61, 62, u128::from(u32::MAX), u128::MAX] {
            let mut buf = [0u8; 22];
            encode_fixed(value, &mut buf);
            assert_eq!(decode(&buf), Some(value));
        }
    }

    #[test]
    fn six_digits_hold_every_u32() {
        let mut buf = [0u8; 6];
        encode_fixed(u128::from(u32::MAX), &mut buf);
        assert_eq!(&buf, b"4gfFC3");
        assert_eq!(decode(&buf), Some(u128::from(u32::MAX)));
    }

    #[test]
    fn characters_outside_the_alphabet_are_rejected() {
        assert_eq!(decode(b"ab_c"), None);
        assert_eq!(decode(b"\xff"), None);
    }

    #[test]
    fn overflow_is_rejected() {
        assert_eq!(decode(&[b'z'; 23]), None);
    }
}
