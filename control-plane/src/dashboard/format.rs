//! How times and counts read on a page — "2 hours ago", "in 6 days", "3 Dec 2026 14:05 UTC" —
//! and the links that keep a listing's filters across its pages.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use keyplane_shared::time::Timestamp;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn millis_of(rfc3339: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// How far `rfc3339` is from `now`, in words: "just now", "5 minutes ago", "in 3 days".
pub fn relative(rfc3339: &str, now: Timestamp) -> String {
    let Some(at) = millis_of(rfc3339) else {
        return rfc3339.to_owned();
    };
    let delta = at - now.as_millis();
    let span = delta.abs();
    if span < MINUTE {
        return "just now".to_owned();
    }
    let (count, unit) = if span < HOUR {
        (span / MINUTE, "minute")
    } else if span < DAY {
        (span / HOUR, "hour")
    } else if span < 60 * DAY {
        (span / DAY, "day")
    } else if span < 730 * DAY {
        (span / (30 * DAY), "month")
    } else {
        (span / (365 * DAY), "year")
    };
    let plural = if count == 1 { "" } else { "s" };
    if delta < 0 {
        format!("{count} {unit}{plural} ago")
    } else {
        format!("in {count} {unit}{plural}")
    }
}

/// Whole days from `rfc3339` to `now` (negative when it is ahead).
pub fn days_since(rfc3339: &str, now: Timestamp) -> Option<i64> {
    millis_of(rfc3339).map(|at| (now.as_millis() - at) / DAY)
}

/// `2026-12-03 14:05 UTC`.
pub fn absolute(rfc3339: &str) -> String {
    let Ok(at) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// The RFC 3339 form of a date picked in a form (`2027-01-31`): the end of that day, UTC.
pub fn end_of_day(date: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    let at = day.with_hms(23, 59, 59).ok()?.assume_utc();
    at.format(&Rfc3339).ok()
}

/// The RFC 3339 form of the start of a picked day, UTC (for "not used since").
pub fn start_of_day(date: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    day.midnight().assume_utc().format(&Rfc3339).ok()
}

/// `path` with the non-empty `pairs` as its query (`path` alone when every one is empty).
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let kept: Vec<&(&str, &str)> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    match serde_html_form::to_string(&kept) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp(millis_of(text).expect("valid"))
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = at("2026-12-03T12:00:00Z");
        assert_eq!(relative("2026-12-03T11:59:30Z", now), "just now");
        assert_eq!(relative("2026-12-03T10:00:00Z", now), "2 hours ago");
        assert_eq!(relative("2026-12-03T11:59:00Z", now), "1 minute ago");
        assert_eq!(relative("2026-12-10T12:00:00Z", now), "in 7 days");
        assert_eq!(relative("2026-06-03T12:00:00Z", now), "6 months ago");
        assert_eq!(relative("not a time", now), "not a time");
        assert_eq!(days_since("2026-09-01T12:00:00Z", now), Some(93));
    }

    #[test]
    fn picked_days_become_times() {
        assert_eq!(
            end_of_day("2027-01-31").as_deref(),
            Some("2027-01-31T23:59:59Z")
        );
        assert_eq!(
            start_of_day("2027-01-31").as_deref(),
            Some("2027-01-31T00:00:00Z")
        );
        assert_eq!(end_of_day("31/01/2027"), None);
        assert_eq!(absolute("2026-12-03T14:05:09Z"), "2026-12-03 14:05 UTC");
    }

    #[test]
    fn links_keep_the_filters_given() {
        assert_eq!(link("/keys", &[("status", ""), ("cursor", "")]), "/keys");
        assert_eq!(
            link(
                "/keys",
                &[("name", "a b&c"), ("status", ""), ("cursor", "x")]
            ),
            "/keys?name=a+b%26c&cursor=x"
        );
    }
}
