//! `POST /v1/edge/usage`: a batch of usage events from an edge.
//!
//! Machine-to-machine, like the change feed: the request is signed with the edge secret over
//! `POST`, the path and the body bytes (`x-keyplane-signature`); anything else is 401
//! `invalid_signature` and nothing is stored. A missing, malformed or stale signature is
//! refused before the body is read. The body is a JSON [`UsageBatch`] of at most
//! [`MAX_BATCH_EVENTS`] events and [`MAX_USAGE_BODY_BYTES`] bytes (413 beyond either); a body
//! that is not a batch is 400. The edge drops a batch refused with 400 or 413 and retries on
//! anything else, so only a batch that can never succeed gets those.
//!
//! Events are read one by one: an event that is not one (a bad id, a missing field, a control
//! character in its text) is counted as `malformed` and skipped, an event dated more than the
//! signature window ahead of the control plane's clock or with a status outside 100-599 as
//! `out_of_range` (a future time would hold the key's `last_used_at` there for good), and
//! neither sinks the rest of the batch. Unknown fields are ignored, so a newer edge can add some.
//!
//! The answer is `{"received": n, "stored": k}`: a batch sent twice stores each event once
//! (`stored` is 0 the second time). Events that name no key, a key that does not exist, or an
//! organization that is not their key's are received but not stored; every outcome is counted
//! in `keyplane_usage_events_total{outcome}`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use keyplane_shared::sync::{self, REPLAY_WINDOW_SECS};
use keyplane_shared::usage::{MAX_BATCH_EVENTS, UsageBatch, UsageEvent, UsageReceipt};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::edge::verify_edge_request;
use crate::error::ApiError;
use crate::replication::registry;
use crate::state::AppState;

/// Largest usage batch body, in bytes: a full batch of events with long paths fits.
pub const MAX_USAGE_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How far ahead of the control plane's clock an event may be dated: the signature's window
/// (an edge whose clock is further off cannot sign a batch anyway).
const MAX_AHEAD_MS: i64 = REPLAY_WINDOW_SECS * 1000;

/// The ingestion route. It reads its body itself, with its own limit (the API's default is
/// much smaller), once the signature header has passed the precheck.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_usage))
}

/// A batch as received: its events are read one by one (see the module header), each from
/// its own text in the body (no intermediate JSON tree).
#[derive(Deserialize)]
struct ReceivedBatch<'a> {
    edge: String,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

// The OpenAPI schemas of the body and the answer: the types themselves live in
// `keyplane-shared`, which knows nothing of OpenAPI.

/// A batch of usage events from one edge.
#[derive(ToSchema)]
#[schema(as = UsageBatch)]
#[allow(dead_code)]
struct UsageBatchDoc {
    /// The sending edge's name (1-64 of `[A-Za-z0-9_-]`).
    edge: String,
    /// At most 1000 events, oldest first.
    events: Vec<UsageEventDoc>,
}

/// One decision at the edge.
#[derive(ToSchema)]
#[schema(as = UsageEvent)]
#[allow(dead_code)]
struct UsageEventDoc {
    /// The request's id (`req_…`); ingestion is idempotent by it.
    request_id: String,
    /// The key presented (`key_…`), when the edge found it; events without one are not stored.
    key_id: Option<String>,
    /// That key's organization (`org_…`).
    org_id: Option<String>,
    /// When the edge decided, in milliseconds since the Unix epoch.
    at: i64,
    /// HTTP method (at most 16 bytes are kept).
    method: String,
    /// Path without the query (at most 512 bytes are kept).
    path: String,
    /// The status the caller got.
    status: u16,
    /// Client address (`CF-Connecting-IP`; at most 64 bytes are kept).
    ip: Option<String>,
}

/// The answer to a batch.
#[derive(ToSchema)]
#[schema(as = UsageReceipt)]
#[allow(dead_code)]
struct UsageReceiptDoc {
    /// Events in the batch.
    received: usize,
    /// Events stored now (the rest were already stored, or could not be attributed to a key).
    stored: usize,
}

/// Ingest a batch of usage events from an edge.
#[utoipa::path(
    post, path = "/v1/edge/usage", tag = "edge",
    request_body(content = UsageBatchDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Received; `stored` counts the events new to the store",
         body = UsageReceiptDoc),
        (status = 400, description = "`invalid_json` / `invalid_request`: not a usage batch",
         body = crate::openapi::ErrorResponse),
        (status = 401, description = "`invalid_signature`: unsigned, badly signed or stale",
         body = crate::openapi::ErrorResponse),
        (status = 413, description = "`payload_too_large`: over 1000 events or 2 MiB",
         body = crate::openapi::ErrorResponse),
    ),
    security(("edge_signature" = []))
)]
async fn ingest_usage(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UsageReceipt>, ApiError> {
    let now = state.now();
    let signature = headers
        .get(sync::SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    sync::precheck(signature, now.as_millis().div_euclid(1000))
        .map_err(|_| ApiError::InvalidSignature)?;
    let body = Limited::new(body, MAX_USAGE_BODY_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                ApiError::PayloadTooLarge(MAX_USAGE_BODY_BYTES)
            } else {
                ApiError::InvalidJson(format!("the body could not be read: {error}"))
            }
        })?
        .to_bytes();
    verify_edge_request(&state, &headers, "POST", &uri, &body)?;
    let received: ReceivedBatch = serde_json::from_slice(&body).map_err(|error| {
        ApiError::InvalidJson(format!("the body is not a usage batch: {error}"))
    })?;
    if received.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooManyEvents(received.events.len()));
    }
    registry::validate_name(&received.edge)
        .map_err(|error| ApiError::InvalidRequest(format!("`edge`: {error}")))?;
    let total = received.events.len();
    let latest = now.as_millis().saturating_add(MAX_AHEAD_MS);
    let (mut malformed, mut out_of_range) = (0, 0);
    let mut events = Vec::with_capacity(total);
    for text in received.events {
        match serde_json::from_str::<UsageEvent>(text.get()) {
            // Text no edge sends (its method, canonical path and client address hold no control
            // character) and PostgreSQL could not store (a NUL): the whole batch would fail,
            // and the edge would send it again for ever.
            Ok(event) if holds_a_control_character(&event) => malformed += 1,
            Err(_) => malformed += 1,
            Ok(event) if !(100..=599).contains(&event.status) || event.at.as_millis() > latest => {
                out_of_range += 1;
            }
            Ok(mut event) => {
                // The bounds the edge applies at the source, for any other producer.
                event.bound();
                events.push(event);
            }
        }
    }
    let batch = UsageBatch {
        edge: received.edge,
        events,
    };
    let report = state.store.ingest_usage(&batch, state.now()).await?;
    let metrics = &state.metrics;
    metrics.count_usage("stored", report.stored);
    metrics.count_usage("duplicate", report.duplicate);
    metrics.count_usage("unattributed", report.unattributed);
    metrics.count_usage("unknown_key", report.unknown_key);
    metrics.count_usage("org_mismatch", report.org_mismatch);
    metrics.count_usage("malformed", malformed);
    metrics.count_usage("out_of_range", out_of_range);
    tracing::debug!(
        edge = %batch.edge,
        received = total,
        stored = report.stored,
        duplicate = report.duplicate,
        not_attributed = report.unattributed + report.unknown_key + report.org_mismatch,
        malformed,
        out_of_range,
        "usage batch ingested"
    );
    Ok(Json(UsageReceipt {
        received: total,
        stored: report.stored,
    }))
}

/// Whether any of `event`'s text fields holds a control character.
fn holds_a_control_character(event: &UsageEvent) -> bool {
    [Some(&event.method), Some(&event.path), event.ip.as_ref()]
        .into_iter()
        .flatten()
        .any(|text| text.chars().any(char::is_control))
}
