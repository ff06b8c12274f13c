//! Fixed-width base62 (`0-9A-Za-z`) encoding used by key bodies, checksums and ids.
//!
//! Fixed width keeps every encoded value the same length, so a key or id has one exact shape that
//! parsers and secret scanners can match.

/// The alphabet, in digit order.
pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Marks a byte outside the alphabet in [`DIGIT_VALUES`].
const NOT_A_DIGIT: u8 = u8::MAX;

/// The value of every byte as a base62 digit, [`NOT_A_DIGIT`] outside the alphabet: one load
/// per character instead of three range tests.
const DIGIT_VALUES: [u8; 256] = {
    let mut values = [NOT_A_DIGIT; 256];
    let mut digit = 0;
    while digit < ALPHABET.len() {
        values[ALPHABET[digit] as usize] = digit as u8;
        digit += 1;
    }
    values
};

/// The value of one base62 character, or `None` outside the alphabet.
pub(crate) const fn digit_value(c: u8) -> Option<u8> {
    match DIGIT_VALUES[c as usize] {
        NOT_A_DIGIT => None,
        value => Some(value),
    }
}

/// Digits encoded per 64-bit step of [`encode_fixed`]: 62^10 < 2^63.
const CHUNK_DIGITS: usize = 10;
/// 62^10.
const CHUNK_BASE: u128 = 62u128.pow(CHUNK_DIGITS as u32);

/// Encodes `value` as exactly `out.len()` base62 digits, most significant first.
///
/// `out` must be long enough for `value`; callers use widths sized for the type's maximum
/// (6 digits for `u32`, 22 for `u128`), so no digit is ever lost.
///
/// Works in chunks of ten digits: one 128-bit division per chunk, then 64-bit arithmetic for
/// the digits (128-bit division is a library call on wasm32; an id takes 3 instead of 44).
pub(crate) fn encode_fixed(mut value: u128, out: &mut [u8]) {
    for chunk in out.rchunks_mut(CHUNK_DIGITS) {
        // The remainder is below 62^10, so it fits in a u64.
        let mut part = (value % CHUNK_BASE) as u64;
        value /= CHUNK_BASE;
        for slot in chunk.iter_mut().rev() {
            *slot = ALPHABET[(part % 62) as usize];
            part /= 62;
        }
        // A short leading chunk must have used up its part.
        value += u128::from(part) * CHUNK_BASE;
    }
    debug_assert_eq!(value, 0, "base62 width too small for value");
}

/// Whether every byte of `text` is in the alphabet.
///
/// Branch-free over the whole text (no early exit on the first bad byte), so the compiler can
/// check it many bytes at a time; [`digit_value`] finds the position on the rare error path.
pub(crate) fn all_digits(text: &[u8]) -> bool {
    text.iter().fold(true, |all, &c| {
        all & ((c.wrapping_sub(b'0') < 10)
            | (c.wrapping_sub(b'A') < 26)
            | (c.wrapping_sub(b'a') < 26))
    })
}

/// Decodes six base62 digits (a checksum) in 64-bit arithmetic: 62^6 < 2^36, so nothing can
/// overflow. `None` on a character outside the alphabet.
pub(crate) fn decode_six(digits: &[u8; 6]) -> Option<u64> {
    let values = digits.map(|c| DIGIT_VALUES[usize::from(c)]);
    if values.contains(&NOT_A_DIGIT) {
        return None;
    }
    Some(
        values
            .iter()
            .fold(0u64, |acc, &value| acc * 62 + u64::from(value)),
    )
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

    /// The plain digit-by-digit encoding, as the reference.
    fn encode_naive(mut value: u128, out: &mut [u8]) {
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(value % 62) as usize];
            value /= 62;
        }
    }

    #[test]
    fn chunked_encoding_matches_digit_by_digit_encoding() {
        let mut values = vec![0u128, 1, u128::MAX, u128::MAX - 1, u128::from(u64::MAX)];
        for power in 1..=21 {
            let p = 62u128.pow(power);
            values.extend([p - 1, p, p + 1]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834_u128;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x);
        }
        for value in values {
            let (mut fast, mut naive) = ([0u8; 22], [0u8; 22]);
            encode_fixed(value, &mut fast);
            encode_naive(value, &mut naive);
            assert_eq!(fast, naive, "{value}");
            let small = value % 62u128.pow(6);
            let (mut fast, mut naive) = ([0u8; 6], [0u8; 6]);
            encode_fixed(small, &mut fast);
            encode_naive(small, &mut naive);
            assert_eq!(fast, naive, "{small}");
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
    fn digit_values_follow_the_alphabet() {
        for (value, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(digit_value(c), Some(value as u8));
        }
        let outside = (0..=u8::MAX).filter(|c| digit_value(*c).is_none()).count();
        assert_eq!(outside, 256 - 62);
    }

    #[test]
    fn the_branch_free_alphabet_check_agrees_with_digit_value_on_every_byte() {
        for c in 0..=u8::MAX {
            assert_eq!(all_digits(&[c]), digit_value(c).is_some(), "{c}");
            assert_eq!(
                all_digits(&[b'a', c, b'Z']),
                digit_value(c).is_some(),
                "{c}"
            );
        }
        assert!(all_digits(b""));
    }

    #[test]
    fn six_digits_decode_as_the_general_decoder_does() {
        for value in [0u128, 1, 61, 62, u128::from(u32::MAX), 62u128.pow(6) - 1] {
            let mut buf = [0u8; 6];
            encode_fixed(value, &mut buf);
            assert_eq!(decode_six(&buf).map(u128::from), decode(&buf), "{value}");
        }
        assert_eq!(decode_six(b"zzzzzz"), Some(62u64.pow(6) - 1));
        assert_eq!(decode_six(b"abc-ef"), None);
    }

    #[test]
    fn overflow_is_rejected() {
        assert_eq!(decode(&[b'z'; 23]), None);
    }
}
