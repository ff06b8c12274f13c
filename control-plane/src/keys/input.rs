//! Validation of what callers send: names, scopes, expiries, metadata, limits and cursors.
//! Each check answers with an error that says which field is wrong and why.

use crate::access::ScopeCeiling;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use keyplane_shared::ids::KeyId;
use keyplane_shared::ids::UserId;
use keyplane_shared::scope::MAX_SCOPES;
use keyplane_shared::{RateLimit, Scope, ScopeSet, Timestamp};
use serde_json::{Map, Value};

use super::model::{MAX_METADATA_ENTRIES, RateLimitBody};
use crate::ceiling::RateLimitCeiling;
use crate::error::ApiError;
use crate::input::time::timestamp;
use crate::limits::MAX_NAME_CHARS;

/// Longest revocation note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// Largest metadata, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest rotation grace period.
pub const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

/// A key name: 1 to 100 characters, no control characters, not only whitespace.
pub fn name(text: &str) -> Result<String, ApiError> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} characters and not blank (got {chars})"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid("`name` must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// The `name` listing filter: the text a key's name contains, none when empty; no control
/// characters (no key's name has one), and no longer than a name (which also keeps the search
/// pattern under SQLite's 50,000-byte `LIKE` limit).
pub fn name_filter(text: String) -> Result<Option<String>, ApiError> {
    let chars = text.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "the `name` filter must be at most {MAX_NAME_CHARS} characters, as names are (got {chars})"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid("`name` must not contain control characters"));
    }
    Ok(Some(text).filter(|text| !text.is_empty()))
}

/// Scopes for a key created or changed by a caller holding `granter`: each must parse, and the
/// caller must hold each one (a key can never hold a scope its creator lacks).
pub fn scopes(texts: &[String], ceiling: &ScopeCeiling) -> Result<ScopeSet, ApiError> {
    // Counted as sent, repeats included: what the document's `maxItems` says.
    if texts.len() > MAX_SCOPES {
        return Err(invalid(format!(
            "`scopes` lists at most {MAX_SCOPES} scopes, got {}",
            texts.len()
        )));
    }
    let mut parsed = Vec::with_capacity(texts.len());
    for text in texts {
        let scope =
            Scope::parse(text).map_err(|error| invalid(format!("`scopes`: `{text}`: {error}")))?;
        parsed.push(scope);
    }
    let set = ScopeSet::new(parsed).map_err(|error| invalid(format!("`scopes`: {error}")))?;
    if let Some(refused) = ceiling.first_refused(&set) {
        return Err(ApiError::InsufficientScope(format!(
            "you cannot grant `{refused}`: it is above what you hold (your key's scopes or your \
             role's ceiling)"
        )));
    }
    Ok(set)
}

/// Whom the `owner` listing filter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFilter {
    /// This user.
    User(UserId),
    /// Nobody, so no key matches: `me` for a management key without an owner (there is none
    /// before the first owner, and then no key has one), or a user id's shape whose digits fit
    /// no id.
    Nobody,
}

impl OwnerFilter {
    /// The user named, if any.
    pub fn user(self) -> Option<UserId> {
        match self {
            OwnerFilter::User(user) => Some(user),
            OwnerFilter::Nobody => None,
        }
    }
}

/// The `owner` listing filter: a user id, or `me` (the caller, or its management key's owner).
pub fn owner(text: &str, me: Option<UserId>) -> Result<OwnerFilter, ApiError> {
    if text == "me" {
        return Ok(me.map_or(OwnerFilter::Nobody, OwnerFilter::User));
    }
    match text.parse() {
        Ok(user) => Ok(OwnerFilter::User(user)),
        Err(_) if crate::input::has_id_shape(text, UserId::TAG) => Ok(OwnerFilter::Nobody),
        Err(_) => Err(invalid(format!(
            "`owner`: `{text}` is not a user id (`usr_…`) or `me`"
        ))),
    }
}

/// An expiry: a preset counted from `now`, `never`, or an RFC 3339 time after `now`.
pub fn expiry(text: Option<&str>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    let preset = |millis: i64| Ok(Some(now.plus_millis(millis)));
    match text.unwrap_or("never") {
        "never" => Ok(None),
        "1h" => preset(HOUR_MS),
        "7d" => preset(7 * DAY_MS),
        "30d" => preset(30 * DAY_MS),
        "90d" => preset(90 * DAY_MS),
        "1y" => preset(365 * DAY_MS),
        other => {
            let at = timestamp(other).map_err(|_| {
                invalid(format!(
                    "`expires` must be 1h, 7d, 30d, 90d, 1y, never or an RFC 3339 time, got `{other}`"
                ))
            })?;
            if at <= now {
                return Err(invalid("`expires` must be in the future"));
            }
            Ok(Some(at))
        }
    }
}

/// A rate-limit override, within the operator's ceiling (`--max-rate-limit`).
pub fn rate_limit(body: RateLimitBody, ceiling: RateLimitCeiling) -> Result<RateLimit, ApiError> {
    let limit = RateLimit::new(body.requests_per_minute, body.burst)
        .map_err(|error| invalid(format!("`rate_limit`: {error}")))?;
    if !ceiling.admits(limit) {
        let most = ceiling.limit();
        return Err(invalid(format!(
            "`rate_limit` exceeds this deployment's ceiling of {} requests per minute with \
             bursts of {} ({ceiling})",
            most.requests_per_minute(),
            most.burst()
        )));
    }
    Ok(limit)
}

/// Metadata: at most 32 entries and 4 KiB serialized.
pub fn metadata(map: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(format!(
            "`metadata` may have at most {MAX_METADATA_ENTRIES} entries"
        )));
    }
    let size = Value::Object(map.clone()).to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "`metadata` may be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})"
        )));
    }
    Ok(map)
}

/// A revocation note: at most 500 characters, no control characters other than newlines.
pub fn note(text: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(invalid(format!(
            "`note` may be at most {MAX_NOTE_CHARS} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("`note` must not contain control characters"));
    }
    Ok(Some(text))
}

/// A rotation's grace period, in milliseconds.
pub fn grace(seconds: u64) -> Result<i64, ApiError> {
    if seconds > MAX_GRACE_SECONDS {
        return Err(invalid(format!(
            "`grace_seconds` may be at most {MAX_GRACE_SECONDS} (30 days)"
        )));
    }
    // In range: at most 30 days of milliseconds.
    Ok(i64::try_from(seconds).unwrap_or(0) * 1000)
}

/// The opaque cursor after a key: its creation time and id.
pub fn key_cursor(at: Timestamp, id: KeyId) -> String {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&at.as_millis().to_be_bytes());
    bytes[8..].copy_from_slice(&id.to_bytes());
    BASE64URL.encode(bytes)
}

/// Reads a cursor made by [`key_cursor`].
pub fn parse_key_cursor(text: &str) -> Result<(Timestamp, KeyId), ApiError> {
    let bytes: [u8; 24] = BASE64URL
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| invalid("`cursor` is not one this API issued"))?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[8..]);
    Ok((Timestamp(i64::from_be_bytes(at)), KeyId::from_bytes(id)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keys::model::EXPIRY_PRESETS;
    use crate::openapi::patterns::{name_pattern, property_config, strings};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    proptest! {
        #![proptest_config(property_config())]

        #[test]
        fn every_name_of_the_documents_pattern_is_taken(text in strings(&name_pattern())) {
            prop_assume!(text.chars().count() <= MAX_NAME_CHARS);
            prop_assert!(name(&text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn names_are_bounded_and_free_of_control_characters() {
        assert!(name("CI deploy key").is_ok());
        assert!(name(&"é".repeat(100)).is_ok(), "100 characters, 200 bytes");
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "tab\there",
            "line\nbreak",
            &"x".repeat(101),
        ] {
            assert!(
                matches!(name(bad), Err(ApiError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        assert!(
            name("Robert'); DROP TABLE api_keys;--").is_ok(),
            "stored as data"
        );
    }

    #[test]
    fn scopes_must_parse_and_be_held_by_the_granter() {
        let granter =
            ScopeCeiling::Only(ScopeSet::parse(["contacts:*", "api-keys:manage"]).expect("valid"));
        let ok = scopes(&["contacts:read".into()], &granter).expect("covered");
        assert_eq!(ok.to_string(), "contacts:read");
        assert!(matches!(
            scopes(&["billing:read".into()], &granter),
            Err(ApiError::InsufficientScope(message)) if message.contains("billing:read")
        ));
        assert!(matches!(
            scopes(&["admin:full".into()], &granter),
            Err(ApiError::InsufficientScope(_))
        ));
        assert!(matches!(
            scopes(&["not a scope".into()], &granter),
            Err(ApiError::InvalidRequest(message)) if message.contains("not a scope")
        ));
        // At most 64 listed, even when repeats would make fewer.
        let repeated = vec!["contacts:read".to_owned(); 65];
        assert!(matches!(
            scopes(&repeated, &granter),
            Err(ApiError::InvalidRequest(message)) if message.contains("at most 64")
        ));
        assert!(scopes(&repeated[..64], &granter).is_ok());
        let admin = ScopeCeiling::Only(ScopeSet::parse(["admin:full"]).expect("valid"));
        assert!(scopes(&["admin:full".into(), "x:y".into()], &admin).is_ok());
        // A developer's default ceiling: anything but key management and admin.
        let developer = ScopeCeiling::developer_default();
        assert!(scopes(&["billing:read".into()], &developer).is_ok());
        assert!(matches!(
            scopes(&["api-keys:*".into()], &developer),
            Err(ApiError::InsufficientScope(_))
        ));
    }

    #[test]
    fn the_owner_filter_names_a_user_or_nobody() {
        let user = UserId::from_bytes([4; 16]);
        assert_eq!(
            owner("me", Some(user)).expect("me"),
            OwnerFilter::User(user)
        );
        assert_eq!(owner("me", None).expect("no owner"), OwnerFilter::Nobody);
        assert_eq!(
            owner(&user.to_string(), None).expect("an id"),
            OwnerFilter::User(user)
        );
        let beyond = format!("usr_{}", "z".repeat(22));
        assert_eq!(
            owner(&beyond, None).expect("an id's shape"),
            OwnerFilter::Nobody
        );
        for bad in ["someone", "usr_", "key_0000000000000000000000"] {
            assert!(owner(bad, Some(user)).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_presets_and_timestamps() {
        assert_eq!(expiry(None, NOW).expect("default"), None);
        for preset in EXPIRY_PRESETS {
            assert!(expiry(Some(preset), NOW).is_ok(), "{preset}");
        }
        assert_eq!(expiry(Some("never"), NOW).expect("never"), None);
        assert_eq!(
            expiry(Some("1h"), NOW).expect("1h"),
            Some(NOW.plus_millis(HOUR_MS))
        );
        assert_eq!(
            expiry(Some("1y"), NOW).expect("1y"),
            Some(NOW.plus_millis(365 * DAY_MS))
        );
        assert_eq!(
            expiry(Some("2030-01-01T00:00:00Z"), NOW).expect("timestamp"),
            Some(Timestamp(1_893_456_000_000))
        );
        for bad in ["2d", "2020-01-01T00:00:00Z", "tomorrow", ""] {
            assert!(expiry(Some(bad), NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_notes_and_grace_are_bounded() {
        let big: Map<String, Value> = (0..33).map(|i| (i.to_string(), Value::Null)).collect();
        assert!(metadata(big).is_err());
        let mut long = Map::new();
        long.insert("k".into(), Value::String("x".repeat(5000)));
        assert!(metadata(long).is_err());
        assert!(note(Some("left the company\nticket 42".into())).is_ok());
        assert!(note(Some("bell\u{7}".into())).is_err());
        assert!(note(Some("x".repeat(501))).is_err());
        assert_eq!(grace(60).expect("ok"), 60_000);
        assert!(grace(MAX_GRACE_SECONDS + 1).is_err());
    }

    #[test]
    fn rate_limits_are_valid_and_within_the_ceiling() {
        let ceiling = RateLimitCeiling::default();
        let body = |requests_per_minute, burst| RateLimitBody {
            requests_per_minute,
            burst,
        };
        let at = rate_limit(body(1000, 100), ceiling).expect("at the ceiling");
        assert_eq!((at.requests_per_minute(), at.burst()), (1000, 100));
        for (rate, burst) in [(1001, 100), (1000, 101), (6_000_000, 1)] {
            assert!(
                matches!(
                    rate_limit(body(rate, burst), ceiling),
                    Err(ApiError::InvalidRequest(message))
                        if message.contains("1000 requests per minute with bursts of 100")
                ),
                "{rate}/{burst}"
            );
        }
        assert!(rate_limit(body(0, 1), ceiling).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = KeyId::from_bytes([9; 16]);
        let cursor = key_cursor(NOW, id);
        assert_eq!(parse_key_cursor(&cursor).expect("own cursor"), (NOW, id));
        for bad in ["", "abc", "!!!!", &cursor[1..]] {
            assert!(parse_key_cursor(bad).is_err(), "{bad}");
        }
    }
}
