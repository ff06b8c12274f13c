//! `POST /v1/leaks/github`: GitHub's secret-scanning partner reports. GitHub posts a JSON
//! array of `{token, type, url, source}`, signed with ECDSA P-256 / SHA-256 over the raw body
//! (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`: base64 DER). An unsigned or
//! badly signed report is refused (401) before anything is read from it.
//!
//! Each token that is a Keyplane key of this deployment is revoked at once (reason
//! `compromised`, the note naming the URL), the revokes of one report in one transaction per
//! organization, each announced as `key.leaked`. The answer is GitHub's feedback array:
//! `token_hash` (hex SHA-256 of the token), `token_type`, and `label` — `true_positive` for a
//! token that is one of this deployment's keys (revoked now or before), `false_positive`
//! otherwise. A replayed report is harmless: it revokes nothing more.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{FromRequest as _, Request};
use keyplane_shared::ApiKey;
use keyplane_shared::ids::OrgId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

use super::find_key;
use crate::auth::{Anonymous, header};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::LeakedKey;

/// The most tokens one report may carry.
pub const MAX_TOKENS: usize = 10_000;

/// The largest report read, in bytes: room for [`MAX_TOKENS`] tokens with long URLs (the rest
/// of the API takes [`crate::limits::MAX_BODY_BYTES`]); 413 `payload_too_large` past it.
pub const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;

/// One reported token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReportedToken {
    /// The text found.
    pub token: String,
    /// The token type GitHub matched (the partner's pattern name).
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it was found.
    #[serde(default)]
    pub url: Option<String>,
    /// What kind of place (`content`, `commit`, `issue`, ...).
    #[serde(default)]
    pub source: Option<String>,
}

/// GitHub's feedback for one token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenFeedback {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The reported type.
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: &'static str,
}

/// Receive a GitHub secret-scanning report (signed by GitHub); live Keyplane keys in it are
/// revoked at once.
#[utoipa::path(
    post, path = "/v1/leaks/github", tag = "leaks",
    request_body(content = Vec<ReportedToken>, description = "GitHub's report, signed over the raw body"),
    responses(
        (status = 200, description = "Feedback for each token", body = Vec<TokenFeedback>),
        (status = 400, description = "Not a report (a JSON array of tokens, at most 10,000)", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Unsigned, or not signed by a configured GitHub key", body = crate::openapi::ErrorResponse),
        (status = 413, description = "Over 4 MiB", body = crate::openapi::ErrorResponse),
        (status = 404, description = "GitHub reports are not configured (`--github-scanning-keys`)", body = crate::openapi::ErrorResponse),
        (status = 503, description = "GitHub's keys could not be fetched yet (`unavailable`); nothing changed", body = crate::openapi::ErrorResponse),
    )
)]
pub(crate) async fn github_report(
    State(state): State<AppState>,
    caller: Anonymous,
    request: Request,
) -> Result<Json<Vec<TokenFeedback>>, ApiError> {
    // Nothing is read (up to 4 MiB) before the route is known to be on and signed at all.
    let Some(keys) = &state.github_scanning else {
        return Err(ApiError::NotFound(
            "GitHub secret-scanning reports (not configured)",
        ));
    };
    let (Some(identifier), Some(signature)) = (
        header(&caller.headers, "github-public-key-identifier"),
        header(&caller.headers, "github-public-key-signature"),
    ) else {
        return Err(ApiError::InvalidSignature);
    };
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(MAX_REPORT_BYTES)
            } else {
                ApiError::InvalidRequest(rejection.body_text())
            }
        })?;
    let now_seconds = state.now().as_millis().div_euclid(1000);
    match keys.verify(identifier, signature, &body, now_seconds).await {
        Some(true) => {}
        Some(false) => return Err(ApiError::InvalidSignature),
        None => return Err(ApiError::FetchFailed("GitHub's secret-scanning keys")),
    }
    let tokens: Vec<ReportedToken> = serde_json::from_slice(&body)
        .map_err(|error| ApiError::InvalidJson(format!("not a report: {error}")))?;
    if tokens.len() > MAX_TOKENS {
        return Err(ApiError::InvalidRequest(format!(
            "a report carries at most {MAX_TOKENS} tokens"
        )));
    }
    let mut feedback = Vec::with_capacity(tokens.len());
    let mut by_org: BTreeMap<OrgId, Vec<LeakedKey>> = BTreeMap::new();
    for reported in &tokens {
        let found = match ApiKey::parse(reported.token.trim(), &state.prefix) {
            Ok(key) => find_key(&state, &key)
                .await?
                .map(|record| (record.org_id, record.id)),
            Err(_) => None,
        };
        if let Some((org, id)) = found {
            let url = reported
                .url
                .as_ref()
                .map(|url| url.chars().filter(|c| !c.is_control()).take(400).collect());
            by_org.entry(org).or_default().push(LeakedKey {
                id,
                source: "github".into(),
                url,
            });
        }
        feedback.push(TokenFeedback {
            token_hash: hex(&Sha256::digest(reported.token.as_bytes())),
            token_type: reported.kind.clone(),
            label: if found.is_some() {
                "true_positive"
            } else {
                "false_positive"
            },
        });
    }
    let now = state.now();
    for (org, leaks) in by_org {
        let revoked = state
            .store
            .revoke_leaked(org, leaks, &caller.context, now)
            .await?;
        let count = revoked.iter().filter(|now_revoked| **now_revoked).count();
        if count > 0 {
            tracing::warn!(org = %org, revoked = count, "keys reported by GitHub secret scanning were revoked");
        }
    }
    Ok(Json(feedback))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
