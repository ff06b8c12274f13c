//! Usage: what the edges report about every request that presented a key, and what users read
//! back from it.
//!
//! - [`ingest`]: `POST /v1/edge/usage`, batches of events from the edges (signed with the edge
//!   secret, idempotent by request id), which also keep each key's `last_used_at` /
//!   `last_used_ip` current.
//! - [`api`]: `GET /v1/keys/{id}/usage` (one key's requests, newest first, filtered and paged)
//!   and `GET /v1/keys/{id}/usage/daily` (per-UTC-day counts by status, for charts).
//! - [`input`]: the parsing of those routes' parameters and cursors.
//! - [`retention`]: the background task that deletes events past the retention period.

pub mod api;
pub mod ingest;
pub mod input;
pub mod retention;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The usage routes: ingestion (OpenAPI tag `edge`) and the per-key reads (tag `usage`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(ingest::router())
        .merge(api::router())
}
