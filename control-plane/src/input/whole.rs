//! Whole numbers in JSON bodies: `30` and `30.0` alike. JSON has one number type, and the
//! document's `integer` admits `30.0` (JSON Schema counts any number without a fractional part
//! as an integer), so a client whose JSON library writes a whole number with a fraction is not
//! refused. A fraction (`30.5`), a negative number, or one beyond the field's type still is.
//!
//! Fields use it with `#[serde(deserialize_with = "crate::input::whole::number")]`, or
//! `…::numbers` for a list.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// One whole number, as `T` (`u32`, `u64`, …).
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(WholeVisitor(PhantomData))
}

/// A list of whole numbers.
pub fn numbers<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let list = Vec::<Whole<T>>::deserialize(deserializer)?;
    Ok(list.into_iter().map(|Whole(value)| value).collect())
}

/// One element of a list read by [`numbers`].
struct Whole<T>(T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        number(deserializer).map(Whole)
    }
}

/// 2^64: the first whole `f64` beyond `u64`.
const BEYOND_U64: f64 = 18_446_744_073_709_551_616.0;

struct WholeVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> WholeVisitor<T> {
    fn fit<E: de::Error>(&self, value: u64, seen: Unexpected<'_>) -> Result<T, E> {
        T::try_from(value).map_err(|_| E::invalid_value(seen, self))
    }
}

impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a whole number, not negative, within the field's range")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        self.fit(value, Unexpected::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        let whole =
            u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))?;
        self.fit(whole, Unexpected::Signed(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        let seen = Unexpected::Float(value);
        if !(value.is_finite() && value.fract() == 0.0 && (0.0..BEYOND_U64).contains(&value)) {
            return Err(E::invalid_value(seen, &self));
        }
        // Whole and within u64: the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = value as u64;
        self.fit(whole, seen)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::number")]
        one: u32,
        #[serde(default, deserialize_with = "super::numbers")]
        many: Vec<u32>,
    }

    fn read(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn whole_numbers_are_read_with_or_without_a_fraction() {
        let body = read(r#"{"one": 13222.0, "many": [1, 30.0, 1e2]}"#).expect("whole numbers");
        assert_eq!((body.one, body.many), (13222, vec![1, 30, 100]));
        assert_eq!(
            read(r#"{"one": 4294967295}"#).expect("u32::MAX").one,
            u32::MAX
        );
    }

    #[test]
    fn fractions_negatives_and_numbers_beyond_the_type_are_refused() {
        for bad in [
            r#"{"one": 1.5}"#,
            r#"{"one": -1}"#,
            r#"{"one": -0.5}"#,
            r#"{"one": 4294967296}"#,
            r#"{"one": 4294967296.0}"#,
            r#"{"one": 1e300}"#,
            r#"{"one": "7"}"#,
            r#"{"one": 1, "many": [2.5]}"#,
        ] {
            let error = read(bad).expect_err(bad);
            assert!(error.contains("a whole number"), "{bad}: {error}");
        }
    }
}
