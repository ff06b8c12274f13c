//! Leaked keys revoke themselves. Whoever finds a Keyplane key posts its full text to
//! `POST /v1/leaks/report` ([`report`]); possession of the key is the proof of exposure, so a
//! live key is revoked at once (reason `compromised`, a note naming where it was found),
//! audited, replicated to the edges like any revoke and announced as `key.leaked`.
//!
//! [`github`] takes GitHub's secret-scanning partner reports (ECDSA-signed) and revokes the
//! keys in them the same way, answering with GitHub's feedback array.
//!
//! [`patterns`] holds the secret-scanning patterns the README publishes for the key format.

pub mod github;
pub mod patterns;
pub mod report;

use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use keyplane_shared::ApiKey;

use crate::state::AppState;
use crate::store::{KeyRecord, StoreError};

/// The stored key `key` is, if it is one of this deployment's (under any of its peppers). The
/// lookup digest is an HMAC of the whole key: a match proves the reporter held it.
pub async fn find_key(state: &AppState, key: &ApiKey) -> Result<Option<KeyRecord>, StoreError> {
    for pepper in state.peppers.iter() {
        if let Some(record) = state.store.key_by_digest(&pepper.digest(key)).await? {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    // A GitHub report may be larger than any other request: its own body limit, applied to
    // its route alone (the layer covers the routes added before it).
    OpenApiRouter::new()
        .routes(routes!(github::github_report))
        .layer(DefaultBodyLimit::max(github::MAX_REPORT_BYTES))
        .routes(routes!(report::report_leak))
}
