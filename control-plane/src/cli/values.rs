//! The values client flags take, parsed at the boundary: key ids, spans of time (`7d`, `90d`),
//! rate limits (`600/20`), metadata (`team=payments`), and the API's own enums (revocation
//! reasons, key states, audit actions) read exactly as the API spells them.

use std::time::Duration;

use keyplane_shared::ids::KeyId;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A key id (`key_…`), checked before it goes into a URL.
pub fn key_id(text: &str) -> Result<KeyId, String> {
    text.parse::<KeyId>()
        .map_err(|_| format!("`{text}` is not a key id (`key_…`)"))
}

/// A span of time: `30s`, `15m`, `12h`, `7d`, `2w`, or combinations (`1d 12h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    /// Whole seconds.
    pub fn seconds(self) -> u64 {
        self.0.as_secs()
    }

    /// Milliseconds, saturating.
    pub fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Parses a [`Span`].
pub fn span(text: &str) -> Result<Span, String> {
    humantime::parse_duration(text.trim())
        .map(Span)
        .map_err(|error| format!("`{text}` is not a span of time such as 7d, 12h or 90d: {error}"))
}

/// A rate limit, `REQUESTS_PER_MINUTE/BURST` (`600/20`).
pub fn rate_limit(text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}`: expected REQUESTS_PER_MINUTE/BURST, e.g. 600/20");
    let (rate, burst) = text.split_once('/').ok_or_else(bad)?;
    let rate: u32 = rate.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    Ok(serde_json::json!({"requests_per_minute": rate, "burst": burst}))
}

/// One metadata entry, `NAME=VALUE` (the value is a string).
pub fn metadata_entry(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("`{text}`: the name is empty"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Metadata as a JSON object (`--metadata-json '{"team":"payments"}'`).
pub fn metadata_json(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object".to_owned()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

/// One of the API's enums, by the name the API uses (`employee_departure`).
pub fn api_enum<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|error| {
        let message = error.to_string();
        // serde says "unknown variant `x`, expected one of `a`, `b`": keep that part.
        message
            .split(" at line")
            .next()
            .unwrap_or(&message)
            .to_owned()
    })
}

/// The API's name of an enum value.
pub fn api_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RevocationReason;

    #[test]
    fn spans_rate_limits_and_metadata_parse_or_say_why_not() {
        assert_eq!(span("7d").expect("7d").seconds(), 7 * 86_400);
        assert_eq!(span("90d").expect("90d").seconds(), 90 * 86_400);
        assert_eq!(span("1d 12h").expect("1d 12h").seconds(), 36 * 3600);
        assert_eq!(span("30s").expect("30s").millis(), 30_000);
        for bad in ["", "7", "seven days", "-1d"] {
            assert!(span(bad).is_err(), "{bad}");
        }
        assert_eq!(
            rate_limit("600/20").expect("ok"),
            serde_json::json!({"requests_per_minute": 600, "burst": 20})
        );
        for bad in ["600", "a/b", "600/", "-1/2"] {
            assert!(rate_limit(bad).is_err(), "{bad}");
        }
        assert_eq!(
            metadata_entry("team=pay=ments").expect("ok"),
            ("team".into(), "pay=ments".into())
        );
        assert!(metadata_entry("team").is_err());
        assert!(metadata_entry("=x").is_err());
        assert!(metadata_json(r#"{"a":1}"#).is_ok());
        assert!(metadata_json("[1]").is_err());
        assert!(key_id("key_../../v1/audit").is_err());
    }

    #[test]
    fn api_enums_read_the_api_names() {
        assert_eq!(
            api_enum::<RevocationReason>("employee_departure").expect("known"),
            RevocationReason::EmployeeDeparture
        );
        let error = api_enum::<RevocationReason>("stolen").expect_err("unknown");
        assert!(error.contains("compromised"), "{error}");
        assert_eq!(api_name(&RevocationReason::ProjectEnded), "project_ended");
    }
}
