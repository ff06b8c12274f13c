//! How times are written: RFC 3339 in UTC to the millisecond. Pure, so every layer may use it
//! (the API's answers, the store's webhook events); reading times is the HTTP boundary's
//! ([`crate::input::time`]).

use keyplane_shared::Timestamp;

/// The latest time written as RFC 3339 (which has four-digit years): 9999-12-31T23:59:59.999Z.
/// No stored time is later (an expiry computed from another, a rotation's successor living as
/// long as its predecessor did, is held to it).
pub const LATEST: Timestamp = Timestamp(253_402_300_799_999);

/// The time `span` before `now` (a cleanup's cutoff), saturating.
pub fn before(now: Timestamp, span: std::time::Duration) -> Timestamp {
    now.plus_millis(-i64::try_from(span.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T10:00:00.000Z`.
pub fn rfc3339(at: Timestamp) -> String {
    let nanos = i128::from(at.as_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| at.as_millis().to_string())
}
