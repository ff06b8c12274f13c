//! Times as the API reads and writes them: RFC 3339, to the millisecond.

use keyplane_shared::Timestamp;

use super::invalid;
use crate::error::ApiError;

/// An RFC 3339 time, to the millisecond.
pub fn timestamp(text: &str) -> Result<Timestamp, ApiError> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| invalid(format!("`{text}` is not an RFC 3339 time: {error}")))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map(Timestamp)
        .map_err(|_| invalid(format!("`{text}` is out of range")))
}

pub use crate::timestamps::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_millisecond() {
        let at = timestamp("2026-11-22T10:00:00.123Z").expect("valid");
        assert_eq!(rfc3339(at), "2026-11-22T10:00:00.123Z");
        assert_eq!(
            timestamp("2026-11-22T11:00:00.123+01:00").expect("valid"),
            at
        );
    }

    #[test]
    fn other_text_is_refused_with_the_text() {
        let error = timestamp("yesterday").expect_err("not a time").to_string();
        assert!(error.contains("yesterday"), "{error}");
    }
}
