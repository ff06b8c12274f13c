//! Usage events: what the edge records for every decision and ships to the control plane.
//!
//! The edge buffers [`UsageEvent`]s and sends them in [`UsageBatch`]es as JSON to
//! `POST /v1/edge/usage`, signed like every replication request ([`crate::sync`]). The request id
//! makes ingestion idempotent: a batch sent twice (a retry after a lost answer) stores each
//! event once. Text fields are bounded here, at the source, so one odd request cannot make a
//! batch too large: [`UsageEvent::new`] truncates the path and the client IP.

use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, OrgId, RequestId};
use crate::time::Timestamp;

/// The ingestion endpoint, relative to the control plane's base URL.
pub const USAGE_PATH: &str = "/v1/edge/usage";
/// Most events in one batch; the control plane refuses larger batches (413).
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Longest path kept, in bytes (longer paths are cut at a character boundary).
pub const MAX_PATH_BYTES: usize = 512;
/// Longest client IP kept, in bytes (an IPv6 address with a zone fits).
pub const MAX_IP_BYTES: usize = 64;
/// Longest method kept, in bytes.
pub const MAX_METHOD_BYTES: usize = 16;

/// One decision at the edge. Unknown fields are ignored when reading one, so an edge newer
/// than its control plane can add fields without its events being refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The request's id (also in the answer's `x-keyplane-request-id`).
    pub request_id: RequestId,
    /// The key the request presented, when it was found in the table (absent for a missing,
    /// malformed or unknown key, and on public routes).
    pub key_id: Option<KeyId>,
    /// That key's organization.
    pub org_id: Option<OrgId>,
    /// When the edge decided.
    pub at: Timestamp,
    /// The HTTP method.
    pub method: String,
    /// The path (no query string: queries may carry secrets).
    pub path: String,
    /// The status the caller got: the edge's own 401/403/429/5xx, or the origin's.
    pub status: u16,
    /// The client's IP as the edge saw it (`CF-Connecting-IP`).
    pub ip: Option<String>,
}

impl UsageEvent {
    /// An event with its text fields cut to the documented bounds.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: RequestId,
        key: Option<(KeyId, OrgId)>,
        at: Timestamp,
        method: &str,
        path: &str,
        status: u16,
        ip: Option<&str>,
    ) -> Self {
        UsageEvent {
            request_id,
            key_id: key.map(|(key_id, _)| key_id),
            org_id: key.map(|(_, org_id)| org_id),
            at,
            method: truncate(method, MAX_METHOD_BYTES).to_owned(),
            path: truncate(path, MAX_PATH_BYTES).to_owned(),
            status,
            ip: ip
                .map(str::trim)
                .filter(|ip| !ip.is_empty())
                .map(|ip| truncate(ip, MAX_IP_BYTES).to_owned()),
        }
    }
}

impl UsageEvent {
    /// Cuts the text fields to the documented bounds in place, at character boundaries: what
    /// [`UsageEvent::new`] does at the source, for events that came from elsewhere.
    pub fn bound(&mut self) {
        cut(&mut self.method, MAX_METHOD_BYTES);
        cut(&mut self.path, MAX_PATH_BYTES);
        if let Some(ip) = &mut self.ip {
            cut(ip, MAX_IP_BYTES);
        }
    }
}

/// Truncates `text` in place to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    let end = truncate(text, max).len();
    text.truncate(end);
}

/// What one edge sends in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// The sending edge's name (`EDGE_NAME`).
    pub edge: String,
    /// Oldest first; at most [`MAX_BATCH_EVENTS`].
    pub events: Vec<UsageEvent>,
}

/// The control plane's answer to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// Events in the batch.
    pub received: usize,
    /// Events stored now (the rest were already stored, or named no key).
    pub stored: usize,
}

/// The longest prefix of `text` of at most `max` bytes ending on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn request_id() -> RequestId {
        RequestId::from_bytes([3; 16])
    }

    #[test]
    fn an_event_round_trips_through_json_with_ids_in_text_form() {
        let key = (KeyId::from_bytes([1; 16]), OrgId::from_bytes([2; 16]));
        let event = UsageEvent::new(
            request_id(),
            Some(key),
            Timestamp(1_700_000_000_123),
            "GET",
            "/v1/contacts/42",
            200,
            Some("203.0.113.9"),
        );
        let batch = UsageBatch {
            edge: "fra".into(),
            events: vec![event.clone()],
        };
        let json = serde_json::to_value(&batch).expect("serializes");
        assert_eq!(json["events"][0]["key_id"], key.0.to_string());
        assert_eq!(json["events"][0]["request_id"], request_id().to_string());
        assert_eq!(json["events"][0]["at"], 1_700_000_000_123_i64);
        let back: UsageBatch = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back.events, vec![event]);
    }

    #[test]
    fn long_fields_are_cut_at_character_boundaries_and_blank_ips_dropped() {
        let path = format!("/{}", "é".repeat(600));
        let event = UsageEvent::new(
            request_id(),
            None,
            Timestamp(0),
            "PROPFINDPROPFINDPROPFIND",
            &path,
            401,
            Some("  "),
        );
        assert!(event.path.len() <= MAX_PATH_BYTES && event.path.len() >= MAX_PATH_BYTES - 1);
        assert!(path.starts_with(&event.path));
        assert_eq!(event.method.len(), MAX_METHOD_BYTES);
        assert_eq!(event.ip, None);
        assert_eq!((event.key_id, event.org_id), (None, None));
    }

    #[test]
    fn bound_cuts_received_fields_at_character_boundaries() {
        let mut event = UsageEvent::new(request_id(), None, Timestamp(0), "GET", "/", 200, None);
        event.path = "é".repeat(300);
        event.method = "GET".into();
        event.ip = Some(format!("a{}", "é".repeat(40)));
        event.bound();
        assert_eq!(event.path.len(), MAX_PATH_BYTES);
        assert_eq!(event.method, "GET");
        assert_eq!(
            event.ip.as_deref().map(str::len),
            Some(MAX_IP_BYTES - 1),
            "never inside a character"
        );
        let mut odd = event.clone();
        odd.path = format!("a{}", "é".repeat(300));
        odd.bound();
        assert_eq!(odd.path.len(), MAX_PATH_BYTES - 1);
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_ids_refused() {
        let good = serde_json::json!({"edge": "a", "events": [{
            "request_id": request_id().to_string(), "key_id": null, "org_id": null, "at": 1,
            "method": "GET", "path": "/", "status": 200, "ip": null
        }]});
        assert!(serde_json::from_value::<UsageBatch>(good.clone()).is_ok());
        let mut extra = good.clone();
        extra["events"][0]["added_later"] = "x".into();
        extra["also_added"] = 1.into();
        let read = serde_json::from_value::<UsageBatch>(extra).expect("unknown fields ignored");
        assert_eq!(
            read,
            serde_json::from_value::<UsageBatch>(good.clone()).expect("valid")
        );
        let mut bad_id = good;
        bad_id["events"][0]["key_id"] = "key_nope".into();
        assert!(serde_json::from_value::<UsageBatch>(bad_id).is_err());
    }
}
