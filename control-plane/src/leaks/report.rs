//! `POST /v1/leaks/report`: anyone who found a Keyplane key reports it by its full text.
//!
//! The answer never says whether the key existed: unknown, already revoked and just revoked
//! keys get the same status and body, and the lookup and revocation happen after the answer
//! (on a task of their own), so neither can the time it takes. Only the key's shape is
//! checked first: a string that is not a key at all is a 400 (which says nothing about any
//! key). Reports are limited per client address (10 at once, then one every 6 seconds). A
//! store that fails (a locked or restarting database) is tried again ([`RETRY_DELAYS`]).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_shared::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::find_key;
use crate::auth::Anonymous;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openapi::formats::FullKeyFormat;
use crate::state::AppState;
use crate::store::{AuditContext, LeakedKey, StoreError};

/// The longest `url` accepted, in characters.
pub const MAX_URL: usize = 500;

/// Body of `POST /v1/leaks/report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// The key as found, in full.
    #[schema(value_type = FullKeyFormat)]
    pub key: String,
    /// Where it was found (a URL or any text up to 500 characters, no control characters), for
    /// the revocation's note.
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub url: Option<String>,
}

/// The answer to every well-formed report.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeakReceived {
    /// Always true: the report was taken. Whether the key existed is not said.
    pub received: bool,
}

/// Report a leaked key. A live key is revoked within moments; the answer is the same whether
/// or not the key existed.
#[utoipa::path(
    post, path = "/v1/leaks/report", tag = "leaks",
    request_body = LeakReport,
    responses(
        (status = 202, description = "Received (the same for every key)", body = LeakReceived),
        (status = 400, description = "Not a key of this deployment's format, or a bad url", body = crate::openapi::ErrorResponse),
        (status = 429, description = "Too many reports from this address", body = crate::openapi::ErrorResponse),
    )
)]
pub(crate) async fn report_leak(
    State(state): State<AppState>,
    caller: Anonymous,
    ApiJson(body): ApiJson<LeakReport>,
) -> Result<(StatusCode, Json<LeakReceived>), ApiError> {
    state
        .leak_reports
        .attempt(caller.context.ip.as_deref(), state.now())
        .map_err(ApiError::TooManyAttempts)?;
    let url = match body.url.map(|url| url.trim().to_owned()) {
        Some(url) if url.chars().count() > MAX_URL || url.chars().any(char::is_control) => {
            return Err(ApiError::InvalidRequest(format!(
                "url must be at most {MAX_URL} characters, without control characters"
            )));
        }
        other => other.filter(|url| !url.is_empty()),
    };
    let key = ApiKey::parse(body.key.trim(), &state.prefix).map_err(|_| {
        ApiError::InvalidRequest("key is not a key of this deployment's format".into())
    })?;
    let context = caller.context;
    tokio::spawn(async move { revoke_with_retries(&state, key, url, &context).await });
    Ok((StatusCode::ACCEPTED, Json(LeakReceived { received: true })))
}

/// How long the revocation of a reported key waits before each further try when the store
/// fails (a locked or restarting database): about a minute and a half in all. The reporter was
/// answered already and has no reason to report again, so a failure must not lose the report.
/// (A process that stops meanwhile loses it: the answer is given before the work, by design.)
pub const RETRY_DELAYS: [Duration; 8] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(60),
];

/// [`revoke_if_known`], tried again after each of [`RETRY_DELAYS`] while the store fails.
async fn revoke_with_retries(
    state: &AppState,
    key: ApiKey,
    url: Option<String>,
    context: &AuditContext,
) {
    let mut delays = RETRY_DELAYS.iter();
    loop {
        let Err(error) = revoke_if_known(state, &key, url.clone(), context).await else {
            return;
        };
        match delays.next() {
            Some(delay) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, request_id = %context.request_id,
                    "a reported leaked key could not be revoked yet");
                tokio::time::sleep(*delay).await;
            }
            None => {
                tracing::error!(%error, request_id = %context.request_id,
                    "a reported leaked key could not be revoked: the store kept failing");
                return;
            }
        }
    }
}

/// Revokes `key` if it is one of this deployment's and not yet revoked.
async fn revoke_if_known(
    state: &AppState,
    key: &ApiKey,
    url: Option<String>,
    context: &AuditContext,
) -> Result<(), StoreError> {
    let Some(record) = find_key(state, key).await? else {
        return Ok(());
    };
    let leak = LeakedKey {
        id: record.id,
        source: "report".into(),
        url,
    };
    let revoked = state
        .store
        .revoke_leaked(record.org_id, vec![leak], context, state.now())
        .await?;
    if revoked.first() == Some(&true) {
        tracing::warn!(key_id = %record.id, "a key reported as leaked was revoked");
    }
    Ok(())
}
