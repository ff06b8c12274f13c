//! Request input shared by every resource: times (RFC 3339 in and out), client addresses, page
//! sizes and whole numbers in JSON bodies.
//! Each parser answers with a 400 that names what is wrong; resource-specific input (key names,
//! scopes, usage windows) stays with its resource.

pub mod ip;
pub mod page;
pub mod time;
pub mod whole;

use crate::error::ApiError;

/// Whether `text` has the shape of an id tagged `tag`: `tag_` and 22 base62 characters. Such a
/// text whose digits exceed 128 bits is no id and names nothing, so a filter by it matches
/// nothing (rather than being refused: nothing in its shape tells it apart).
pub fn has_id_shape(text: &str, tag: &str) -> bool {
    text.strip_prefix(tag)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|digits| {
            digits.len() == 22 && digits.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The number written by 1 to `most` ASCII digits, and nothing else (no sign, no space): how
/// cursors are read, exactly as the document's patterns state them.
pub fn digits(text: &str, most: usize) -> Option<u64> {
    let plain =
        (1..=most.min(19)).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

/// A 400 `invalid_request` with `message`.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

#[cfg(test)]
mod tests {
    use keyplane_shared::ids::KeyId;

    use super::*;

    #[test]
    fn digits_are_ascii_digits_only_within_their_count() {
        assert_eq!(digits("0", 18), Some(0));
        assert_eq!(digits("000123", 18), Some(123));
        assert_eq!(digits(&"9".repeat(18), 18), Some(999_999_999_999_999_999));
        for refused in ["", "+5", "-5", " 5", "5 ", "1e3", "٣", &"9".repeat(19)] {
            assert_eq!(digits(refused, 18), None, "{refused:?}");
        }
    }

    #[test]
    fn an_id_shape_is_the_tag_and_22_base62_characters_whatever_their_value() {
        let beyond = format!("key_{}", "z".repeat(22));
        assert!(has_id_shape(&beyond, "key"));
        assert!(beyond.parse::<KeyId>().is_err(), "beyond 128 bits");
        assert!(has_id_shape(&format!("key_{}", "0".repeat(22)), "key"));
        for other in [
            "key_",
            "key_abc",
            "usr_0000000000000000000000",
            "key_000000000000000000000!",
        ] {
            assert!(!has_id_shape(other, "key"), "{other}");
        }
    }
}
