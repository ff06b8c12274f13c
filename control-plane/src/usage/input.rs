//! The parameters of the usage API: time windows, day ranges, status filters, client
//! addresses, page sizes and cursors. Each check answers 400 saying which parameter is wrong.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::RequestId;
use time::{Date, Duration, OffsetDateTime};

use crate::error::ApiError;
use crate::input::page::PageBounds;
use crate::input::time::timestamp;
use crate::store::StatusFilter;

/// The window `GET /v1/keys/{id}/usage` reads when `from` is not given: 24 hours.
pub const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;
/// Default page of usage events.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page of usage events.
pub const MAX_LIMIT: u32 = 1_000;
/// Days `GET /v1/keys/{id}/usage/daily` reads when `from` is not given (ending with `to`).
pub const DEFAULT_DAYS: u32 = 30;
/// Most days one daily query may span.
pub const MAX_DAYS: u32 = 366;

const DAY_MS: i64 = 86_400_000;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

/// Where a usage page continues: after the event (`at`, `request_id`), within the window that
/// started at `from` (kept so that a default window does not slide while a client pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCursor {
    /// The previous page's last event's time.
    pub at: Timestamp,
    /// Its request id.
    pub request_id: RequestId,
    /// The window's start on the first page.
    pub from: Timestamp,
}

impl UsageCursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.at.as_millis().to_be_bytes());
        bytes[8..24].copy_from_slice(&self.request_id.to_bytes());
        bytes[24..].copy_from_slice(&self.from.as_millis().to_be_bytes());
        BASE64URL.encode(bytes)
    }

    /// Reads a cursor made by [`UsageCursor::encode`].
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bytes: [u8; 32] = BASE64URL
            .decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| invalid("`cursor` is not one this API issued"))?;
        let int = |range: std::ops::Range<usize>| {
            let mut out = [0u8; 8];
            out.copy_from_slice(&bytes[range]);
            Timestamp(i64::from_be_bytes(out))
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        Ok(UsageCursor {
            at: int(0..8),
            request_id: RequestId::from_bytes(id),
            from: int(24..32),
        })
    }
}

/// The window of a usage query, `[from, to)`: `from` as given, else the cursor's, else 24 hours
/// before `to` (or before `now`); `to` as given, else open.
pub fn window(
    from: Option<&str>,
    to: Option<&str>,
    cursor: Option<&UsageCursor>,
    now: Timestamp,
) -> Result<(Timestamp, Option<Timestamp>), ApiError> {
    let time = |text: &str, field: &str| {
        timestamp(text).map_err(|_| invalid(format!("`{field}` must be an RFC 3339 time")))
    };
    let to = to.map(|text| time(text, "to")).transpose()?;
    let from = match (from, cursor) {
        (Some(text), _) => time(text, "from")?,
        (None, Some(cursor)) => cursor.from,
        (None, None) => to.unwrap_or(now).plus_millis(-DEFAULT_WINDOW_MS),
    };
    if to.is_some_and(|to| from >= to) {
        return Err(invalid("`from` must be before `to`"));
    }
    Ok((from, to))
}

/// A status filter: one code (`429`, 100 to 599) or a class (`4xx`, 1xx to 5xx).
pub fn status(text: &str) -> Result<StatusFilter, ApiError> {
    let error = || {
        invalid(format!(
            "`status` must be a code from 100 to 599 (e.g. `429`) or a class from `1xx` to \
             `5xx`, got `{text}`"
        ))
    };
    let bytes = text.as_bytes();
    if let [class @ b'1'..=b'5', x1, x2] = bytes
        && x1.eq_ignore_ascii_case(&b'x')
        && x2.eq_ignore_ascii_case(&b'x')
    {
        return Ok(StatusFilter::Class(class - b'0'));
    }
    if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(error());
    }
    match text.parse::<u16>() {
        Ok(code @ 100..=599) => Ok(StatusFilter::Exact(code)),
        _ => Err(error()),
    }
}

/// A page of usage events: 1 to 1000, default 100.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    PAGE.size(limit)
}

/// The bounds of a usage listing's `limit`.
const PAGE: PageBounds = PageBounds {
    default: DEFAULT_LIMIT,
    max: MAX_LIMIT,
};

/// The UTC days of a daily query, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// The first day.
    pub first: Date,
    /// How many days, from 1 to [`MAX_DAYS`].
    pub days: u32,
}

impl DayRange {
    /// The start of the first day.
    pub fn start(&self) -> Timestamp {
        Timestamp(self.first.midnight().assume_utc().unix_timestamp() * 1000)
    }

    /// The day `offset` days after the first.
    pub fn day(&self, offset: u32) -> Option<Date> {
        self.first.checked_add(Duration::days(i64::from(offset)))
    }

    /// The last day.
    pub fn last(&self) -> Option<Date> {
        self.day(self.days.saturating_sub(1))
    }
}

/// The days from `from` to `to` (each a date `2026-11-22` or an RFC 3339 time, meaning its UTC
/// day; both included); `to` defaults to today, `from` to 29 days before `to`.
pub fn day_range(
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<DayRange, ApiError> {
    let last = match to {
        Some(text) => day(text, "to")?,
        None => utc_day(now).ok_or_else(|| invalid("the clock is out of range"))?,
    };
    let first = match from {
        Some(text) => day(text, "from")?,
        None => last
            .checked_sub(Duration::days(i64::from(DEFAULT_DAYS) - 1))
            .ok_or_else(|| invalid("`to` is out of range"))?,
    };
    let span = (last - first).whole_days() + 1;
    if span < 1 {
        return Err(invalid("`from` must not be after `to`"));
    }
    match u32::try_from(span) {
        Ok(days @ 1..=MAX_DAYS) => Ok(DayRange { first, days }),
        _ => Err(invalid(format!(
            "at most {MAX_DAYS} days per query (`from` to `to` spans {span})"
        ))),
    }
}

/// A date `YYYY-MM-DD`, or the UTC day of an RFC 3339 time.
fn day(text: &str, field: &str) -> Result<Date, ApiError> {
    let error = || {
        invalid(format!(
            "`{field}` must be a date (2026-11-22) or an RFC 3339 time, got `{text}`"
        ))
    };
    if let Ok(date) = Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        return Ok(date);
    }
    timestamp(text).ok().and_then(utc_day).ok_or_else(error)
}

/// The UTC day of a time.
fn utc_day(at: Timestamp) -> Option<Date> {
    OffsetDateTime::from_unix_timestamp(at.as_millis().div_euclid(DAY_MS) * 86_400)
        .ok()
        .map(OffsetDateTime::date)
}

/// A date as `YYYY-MM-DD`.
pub fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::ip::ip;

    /// 2027-01-15T08:00:00Z.
    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn statuses_are_codes_or_classes() {
        assert_eq!(status("429").expect("code"), StatusFilter::Exact(429));
        assert_eq!(status("4xx").expect("class"), StatusFilter::Class(4));
        assert_eq!(status("5XX").expect("class"), StatusFilter::Class(5));
        assert_eq!(StatusFilter::Class(4).range(), (400, 500));
        assert_eq!(StatusFilter::Exact(429).range(), (429, 430));
        for bad in [
            "", "42", "4290", "099", "600", "6xx", "0xx", "4x", "x4x", "+42", "abc",
        ] {
            assert!(status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_window_is_the_last_day_and_the_cursor_keeps_its_start() {
        let (from, to) = window(None, None, None, NOW).expect("default");
        assert_eq!((from, to), (NOW.plus_millis(-DEFAULT_WINDOW_MS), None));
        let (from, to) = window(None, Some("2027-01-10T00:00:00Z"), None, NOW).expect("to");
        assert_eq!(to, Some(Timestamp(1_799_539_200_000)));
        assert_eq!(from, Timestamp(1_799_539_200_000 - DEFAULT_WINDOW_MS));
        let cursor = UsageCursor {
            at: NOW,
            request_id: RequestId::from_bytes([7; 16]),
            from: Timestamp(5),
        };
        assert_eq!(
            window(None, None, Some(&cursor), NOW).expect("cursor").0,
            Timestamp(5)
        );
        assert!(
            window(
                Some("2027-01-10T00:00:00Z"),
                Some("2027-01-10T00:00:00Z"),
                None,
                NOW
            )
            .is_err()
        );
        assert!(window(Some("yesterday"), None, None, NOW).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = UsageCursor {
            at: NOW,
            request_id: RequestId::from_bytes([9; 16]),
            from: Timestamp(-3),
        };
        let text = cursor.encode();
        assert_eq!(UsageCursor::parse(&text).expect("own cursor"), cursor);
        for bad in ["", "abc", "!!!!", &text[1..]] {
            assert!(UsageCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn day_ranges_take_dates_or_times_and_are_bounded() {
        let default = day_range(None, None, NOW).expect("default");
        assert_eq!(default.days, DEFAULT_DAYS);
        assert_eq!(default.last().map(date_text).as_deref(), Some("2027-01-15"));
        assert_eq!(date_text(default.first), "2026-12-17");
        let range = day_range(Some("2026-11-21"), Some("2026-11-22T23:59:59Z"), NOW).expect("ok");
        assert_eq!(
            (date_text(range.first), range.days),
            ("2026-11-21".to_owned(), 2)
        );
        assert_eq!(range.start(), Timestamp(1_795_219_200_000));
        assert!(day_range(Some("2026-11-23"), Some("2026-11-22"), NOW).is_err());
        assert!(
            day_range(Some("2025-01-01"), Some("2026-01-01"), NOW).is_ok(),
            "366 days"
        );
        assert!(
            day_range(Some("2025-01-01"), Some("2026-01-02"), NOW).is_err(),
            "367 days"
        );
        assert!(day_range(Some("22/11/2026"), None, NOW).is_err());
    }

    #[test]
    fn addresses_and_page_sizes_are_bounded() {
        assert_eq!(ip("203.0.113.9").expect("ok"), "203.0.113.9");
        assert!(ip("").is_err());
        assert!(ip(&"1".repeat(65)).is_err());
        assert_eq!(page_size(None).expect("default"), 100);
        assert_eq!(page_size(Some(1000)).expect("max"), 1000);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(1001)).is_err());
    }
}
