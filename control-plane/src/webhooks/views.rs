//! What the webhooks API answers: endpoints (never their secret), the one answer that carries
//! a new secret, and pages of delivery attempts with their cursors.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::EventId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::input::digits;
use crate::store::{AttemptRecord, WebhookRecord};
use crate::timestamps::rfc3339;

/// An endpoint, as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookView {
    /// `whk_…`.
    pub id: String,
    /// Where events are posted.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why Keyplane disabled it (deliveries failing for 5 days), if it did.
    pub disabled_reason: Option<String>,
    /// When deliveries started failing with no success since (RFC 3339).
    pub failing_since: Option<String>,
    /// Until when the secrets replaced by rotations also sign (RFC 3339): the last of their
    /// times, while one still signs.
    pub previous_secret_expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl WebhookView {
    /// The view of `record` at `now`.
    pub fn of(record: &WebhookRecord, now: Timestamp) -> Self {
        WebhookView {
            id: record.id.to_string(),
            url: record.url.clone(),
            description: record.description.clone(),
            events: record
                .events
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
            enabled: record.enabled,
            disabled_reason: record.disabled.as_ref().map(|(_, reason)| reason.clone()),
            failing_since: record.failing_since.map(rfc3339),
            previous_secret_expires_at: record
                .previous
                .iter()
                .map(|(_, until)| *until)
                .filter(|until| *until > now)
                .max()
                .map(rfc3339),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
        }
    }
}

/// An endpoint with its new signing secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The endpoint.
    pub webhook: WebhookView,
    /// `whsec_…`: base64 of the HMAC-SHA256 key, as Standard Webhooks libraries take it.
    pub secret: String,
}

/// The endpoints of the organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first (at most 20).
    pub items: Vec<WebhookView>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// The event (`evt_…`, its `webhook-id`).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// 1 for the first attempt of this event to this endpoint.
    pub attempt: u32,
    /// When (RFC 3339).
    pub at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// The answer's status; none when there was no answer.
    pub status: Option<u16>,
    /// `delivered`, `http_error`, `timeout`, `connect_error`, `request_error`,
    /// `refused_address` or `invalid_url`.
    pub outcome: String,
    /// The first 256 bytes of the answer, or the error.
    pub response: String,
}

/// A page of attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    /// Newest first.
    pub items: Vec<AttemptView>,
    /// Pass as `cursor` for the next page; none on the last.
    pub next_cursor: Option<String>,
}

/// Query of the attempts listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// A `next_cursor`.
    #[param(value_type = Option<crate::openapi::formats::AttemptCursorFormat>)]
    pub cursor: Option<String>,
}

/// The view of one attempt.
pub fn attempt_view(record: &AttemptRecord) -> AttemptView {
    AttemptView {
        event_id: record.event_id.to_string(),
        event_type: record.event_type.clone(),
        attempt: record.attempt,
        at: rfc3339(record.result.at),
        duration_ms: record.result.duration_ms,
        status: record.result.status,
        outcome: record.result.outcome.clone(),
        response: record.result.response.clone(),
    }
}

/// `{at}.{event}.{attempt}`: where a page ended.
pub fn cursor_of(record: &AttemptRecord) -> String {
    format!(
        "{}.{}.{}",
        record.result.at.as_millis(),
        record.event_id,
        record.attempt
    )
}

/// The position a `next_cursor` stands for; a clear error for any other text.
pub fn parse_cursor(text: &str) -> Result<(Timestamp, EventId, u32), ApiError> {
    let bad = || ApiError::InvalidRequest("`cursor` is not one this listing gave".into());
    // Read exactly as the document's pattern states it: `-?` and 1 to 18 digits, the event's
    // id, 1 to 9 digits.
    let mut parts = text.splitn(3, '.');
    let at = parts
        .next()
        .and_then(|part| {
            let (sign, magnitude) = part.strip_prefix('-').map_or((1, part), |rest| (-1, rest));
            let magnitude = i64::try_from(digits(magnitude, 18)?).ok()?;
            Some(sign * magnitude)
        })
        .ok_or_else(bad)?;
    let event = parts
        .next()
        .and_then(|part| part.parse().ok())
        .ok_or_else(bad)?;
    let attempt = parts
        .next()
        .and_then(|part| digits(part, 9))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(bad)?;
    Ok((Timestamp(at), event, attempt))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::openapi::patterns::{attempt_cursor_pattern, strings};

    proptest! {
        #[test]
        fn every_cursor_of_the_documents_pattern_is_read(text in strings(&attempt_cursor_pattern())) {
            prop_assert!(parse_cursor(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        assert!(parse_cursor("12.evt_nope.1").is_err());
        assert!(parse_cursor("").is_err());
        let event = EventId::from_bytes([3; 16]);
        let text = format!("1700.{event}.2");
        assert_eq!(
            parse_cursor(&text).expect("parses"),
            (Timestamp(1700), event, 2)
        );
        assert_eq!(
            parse_cursor(&format!("-5.{event}.0")).expect("parses"),
            (Timestamp(-5), event, 0)
        );
        // Only what the document's pattern names: no sign but a leading minus, no spaces.
        for forged in [
            format!("+1700.{event}.2"),
            format!("1700.{event}.+2"),
            format!(" 1700.{event}.2"),
            format!("1700.{event}.{}", "9".repeat(10)),
        ] {
            assert!(parse_cursor(&forged).is_err(), "{forged}");
        }
    }
}
