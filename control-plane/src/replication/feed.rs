//! The change feed as edges read it. Machine-to-machine: requests are signed with the edge
//! secret (not a management key); any signature problem is one 401 `invalid_signature`.
//!
//! - `GET /v1/edge/changes?after=N[&limit=L]`: the KPCB-encoded changes in `(N, min(N+L, head)]`
//!   (`limit` 1..=10000, default 1000), header `x-keyplane-head-seq`; `after > head` is 409
//!   `sequence_ahead` (the edge then loads a snapshot).
//! - `GET /v1/edge/snapshot`: the KPSN-encoded table at the head, header `x-keyplane-seq`. It is
//!   built by replaying the change log (O(changes)); compaction is future work.
//!
//! Both accept `edge=<name>&url=<push URL>`, which registers (or updates) the edge.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use keyplane_shared::KeyTable;
use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::{encode_changes, encode_snapshot};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Default and largest page of changes.
pub const DEFAULT_LIMIT: u64 = 1_000;
/// Largest page of changes.
pub const MAX_LIMIT: u64 = 10_000;

/// The feed routes (undocumented in the management OpenAPI: they are for edges).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/edge/changes", get(changes))
        .route("/v1/edge/snapshot", get(snapshot))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    after: Option<u64>,
    limit: Option<u64>,
    edge: Option<String>,
    url: Option<String>,
}

/// Checks the signature over the method, the exact path and query, and the empty body.
fn verify(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
    let header = headers
        .get(sync::SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    let now_secs = state.now().as_millis().div_euclid(1000);
    sync::verify(
        &state.edge_secret,
        header,
        now_secs,
        &SignedRequest {
            method: "GET",
            path_and_query,
            body: &[],
        },
    )
    .map(|_| ())
    .map_err(|_| ApiError::InvalidSignature)
}

/// Parses the query (after the signature check) and registers the edge if it named itself.
async fn read_query(state: &AppState, uri: &Uri, seq: Option<u64>) -> Result<FeedQuery, ApiError> {
    let Query(query) = Query::<FeedQuery>::try_from_uri(uri)
        .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    match (&query.edge, &query.url) {
        (Some(name), Some(url)) => {
            validate_edge(name, url)?;
            state
                .store
                .register_edge(name, url, seq.or(query.after), state.now())
                .await?;
        }
        (None, None) => {}
        _ => {
            return Err(ApiError::InvalidRequest(
                "`edge` and `url` go together".into(),
            ));
        }
    }
    Ok(query)
}

/// An edge name is 1-64 of `[A-Za-z0-9_-]`; its URL is absolute http(s), at most 2048 bytes.
pub fn validate_edge(name: &str, url: &str) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ApiError::InvalidRequest(
            "an edge name is 1-64 characters of [A-Za-z0-9_-]".into(),
        ));
    }
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let parses = url.parse::<Uri>().is_ok_and(|uri| uri.host().is_some());
    if !scheme_ok || !parses || url.len() > 2048 {
        return Err(ApiError::InvalidRequest(
            "an edge URL is an absolute http:// or https:// URL of at most 2048 bytes".into(),
        ));
    }
    Ok(())
}

async fn changes(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    verify(&state, &headers, &uri)?;
    let query = read_query(&state, &uri, None).await?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let head = state.store.feed_head().await?;
    if after > head {
        return Err(ApiError::SequenceAhead(head));
    }
    let changes = state
        .store
        .changes_after(after, limit.min(head - after))
        .await?;
    Ok(binary(
        encode_changes(&changes),
        "x-keyplane-head-seq",
        head,
    ))
}

async fn snapshot(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    verify(&state, &headers, &uri)?;
    let head = state.store.feed_head().await?;
    read_query(&state, &uri, Some(head)).await?;
    let mut table = KeyTable::new();
    while table.applied_seq() < head {
        let after = table.applied_seq();
        let page = state
            .store
            .changes_after(after, MAX_LIMIT.min(head - after))
            .await?;
        if page.is_empty() {
            return Err(ApiError::internal(anyhow::anyhow!(
                "the change log ends at {after}, before the feed head {head}"
            )));
        }
        table
            .apply_all(&page)
            .map_err(|gap| ApiError::internal(anyhow::anyhow!("change log: {gap}")))?;
    }
    Ok(binary(encode_snapshot(&table), "x-keyplane-seq", head))
}

fn binary(body: Vec<u8>, seq_header: &'static str, seq: u64) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(seq_header, HeaderValue::from(seq));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
