//! The change feed as edges read it. Machine-to-machine: requests are signed with the edge
//! secret (not a management key); any signature problem is one 401 `invalid_signature`.
//!
//! - `GET /v1/edge/changes?after=N[&limit=L]`: the KPCB-encoded changes after `N`, up to the
//!   head: at most `L` (1..=10000, default 1000) and [`sync::MAX_CHANGES_BYTES`] (fewer when
//!   the keys carry many long scopes), header `x-keyplane-head-seq` (more follow while the page ends
//!   before it); `after > head` is 409 `sequence_ahead` (the edge then loads a snapshot).
//! - `GET /v1/edge/snapshot`: the KPSN-encoded table at the head, header `x-keyplane-seq`.
//!
//! Both accept `edge=<name>&url=<push URL>`, which registers the edge: an edge that pulls once
//! starts receiving pushes. A pull that names a registered edge from another URL is served but
//! moves nothing (only an operator moves an edge: `keyplane edges add`); the conflict is noted
//! on the edge and logged. The signature covers the path and query exactly as received, so
//! they are checked before anything else is read from the request.
//!
//! Every answer that can change an edge's table (200 and 409) is signed for the request it
//! answers (`keyplane_shared::sync::sign_response`, bound to the request's nonce) and names the
//! feed's history and chain: at `after` for a page of changes, at the head for a snapshot
//! (`x-keyplane-history`, `x-keyplane-chain`). A 409 is signed over an empty body (its JSON
//! body is for people). An edge whose own chain at `after` differs belongs to another history
//! (a re-created or restored database) and reloads a snapshot.

use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse as _, Response};
use keyplane_shared::sync::{self, SignedResponse};
use keyplane_shared::table::codec::{encode_changes_within, encode_snapshot};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::registry;
use crate::auth::edge::SignedByEdge;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{FeedSnapshot, Registration};

/// Default page of changes.
pub const DEFAULT_LIMIT: u64 = 1_000;
/// Largest page of changes.
pub const MAX_LIMIT: u64 = 10_000;
/// Header of a changes page: the feed's head when it was read.
pub const HEAD_SEQ_HEADER: &str = sync::HEAD_SEQ_HEADER;
/// Header of a snapshot: the sequence the table is at.
pub const SNAPSHOT_SEQ_HEADER: &str = sync::SNAPSHOT_SEQ_HEADER;

/// The feed routes (OpenAPI tag `edge`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(changes))
        .routes(routes!(snapshot))
}

/// `GET /v1/edge/changes` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The sequence the edge has applied (default 0): changes after it are sent.
    pub after: Option<u64>,
    /// Most changes to send, 1 to 10000 (default 1000).
    pub limit: Option<u64>,
    /// The edge's name (1-64 of `[A-Za-z0-9_-]`); with `url`, registers the edge.
    pub edge: Option<String>,
    /// The edge's base URL (pushes go to `<url>/__keyplane/sync`); with `edge`.
    pub url: Option<String>,
}

/// `GET /v1/edge/snapshot` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// The edge's name (1-64 of `[A-Za-z0-9_-]`); with `url`, registers the edge.
    pub edge: Option<String>,
    /// The edge's base URL (pushes go to `<url>/__keyplane/sync`); with `edge`.
    pub url: Option<String>,
}

/// Parses the query; only called once the signature is checked.
fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))
}

/// The edge naming itself, if it did: both `edge` and `url`, valid, or neither.
fn registration<'a>(
    state: &AppState,
    edge: &'a Option<String>,
    url: &'a Option<String>,
) -> Result<Option<(&'a str, &'a str)>, ApiError> {
    match (edge, url) {
        (Some(name), Some(url)) => {
            registry::validate(name, url, state.policy.local_dev)
                .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
            Ok(Some((name, url)))
        }
        (None, None) => Ok(None),
        _ => Err(ApiError::InvalidRequest(
            "`edge` and `url` go together".into(),
        )),
    }
}

/// Records that the edge pulled, at sequence `seq`. A pull naming a registered edge from
/// another URL is still served (the data is signed and the edge needs it) but moves nothing.
async fn register(state: &AppState, edge: Option<(&str, &str)>, seq: u64) -> Result<(), ApiError> {
    if let Some((name, url)) = edge {
        let registration = state
            .store
            .register_edge(name, url, Some(seq), state.now())
            .await?;
        if let Registration::UrlConflict { registered_url } = registration {
            tracing::warn!(
                edge = %name,
                %registered_url,
                pulled_from = %url,
                "a pull named a registered edge from another URL: registration refused \
                 (an operator moves an edge with `keyplane edges add`)"
            );
        }
    }
    Ok(())
}

/// The changes after a sequence, KPCB-encoded.
#[utoipa::path(
    get, path = "/v1/edge/changes", tag = "edge",
    params(ChangesQuery),
    responses(
        (status = 200, description = "The changes after `after`, in order, up to the head: at most \
                                      `limit` and 1 MiB (a KPCB batch; empty when the edge is up to \
                                      date; more follow while it ends before the head)",
         body = Vec<u8>, content_type = "application/octet-stream",
         headers(
             ("x-keyplane-head-seq" = u64, description = "The feed's head"),
             ("x-keyplane-history" = String, description = "The feed's history id (`hst_…`)"),
             ("x-keyplane-chain" = String, description = "The feed chain at `after` (hex)"),
             ("x-keyplane-response-signature" = String,
              description = "`t=…,v1=…`: the answer signed for this request's nonce"))),
        (status = 400, description = "Invalid parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "`invalid_signature`: unsigned, badly signed or stale",
         body = crate::openapi::ErrorResponse),
        (status = 409, description = "`sequence_ahead`: `after` is past the head; load a snapshot \
                                      (signed like a 200, over an empty body)",
         body = crate::openapi::ErrorResponse),
    ),
    security(("edge_signature" = []))
)]
async fn changes(
    State(state): State<AppState>,
    SignedByEdge { nonce }: SignedByEdge,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: ChangesQuery = query(&uri)?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let edge = registration(&state, &query.edge, &query.url)?;
    // Every change up to the head read here is committed (writers serialize on the feed row).
    let head = state.store.feed_head().await?;
    let history = state.store.feed_history().to_string();
    let head_text = head.to_string();
    if after > head {
        let refusal = ApiError::SequenceAhead(head).into_response();
        let fields = [history.as_str(), head_text.as_str(), "", ""];
        return Ok(signed(&state, nonce, refusal, fields, &[]));
    }
    register(&state, edge, after).await?;
    let count = limit.min(head - after);
    let changes = if count == 0 {
        Vec::new()
    } else {
        state
            .store
            .changes_within(after, count, sync::MAX_CHANGES_BYTES)
            .await?
    };
    let chain = state.store.chain_at(after).await?.to_hex();
    let (_, body) = encode_changes_within(&changes, sync::MAX_CHANGES_BYTES);
    let fields = [history.as_str(), head_text.as_str(), "", chain.as_str()];
    Ok(signed(&state, nonce, binary(body.clone()), fields, &body))
}

/// The whole table at the head, KPSN-encoded.
#[utoipa::path(
    get, path = "/v1/edge/snapshot", tag = "edge",
    params(SnapshotQuery),
    responses(
        (status = 200, description = "The table after applying changes 1..=S (a KPSN snapshot, \
                                      whose applied sequence is S)",
         body = Vec<u8>, content_type = "application/octet-stream",
         headers(
             ("x-keyplane-seq" = u64, description = "S, the sequence the table is at"),
             ("x-keyplane-history" = String, description = "The feed's history id (`hst_…`)"),
             ("x-keyplane-chain" = String, description = "The feed chain at S (hex)"),
             ("x-keyplane-response-signature" = String,
              description = "`t=…,v1=…`: the answer signed for this request's nonce"))),
        (status = 400, description = "Invalid parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "`invalid_signature`: unsigned, badly signed or stale",
         body = crate::openapi::ErrorResponse),
    ),
    security(("edge_signature" = []))
)]
async fn snapshot(
    State(state): State<AppState>,
    SignedByEdge { nonce }: SignedByEdge,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: SnapshotQuery = query(&uri)?;
    let edge = registration(&state, &query.edge, &query.url)?;
    let head = state.store.feed_head().await?;
    register(&state, edge, head).await?;
    let FeedSnapshot { table, seq, chain } = state.store.snapshot_at(head).await?;
    let body = encode_snapshot(&table);
    let (history, seq, chain) = (
        state.store.feed_history().to_string(),
        seq.to_string(),
        chain.to_hex(),
    );
    let fields = [history.as_str(), "", seq.as_str(), chain.as_str()];
    Ok(signed(&state, nonce, binary(body.clone()), fields, &body))
}

/// A binary answer, never cached.
fn binary(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `response` with the `fields` headers (`sync::RESPONSE_FIELDS`, empty ones left out) and
/// its signature for the request that carried `nonce`, over `signed_body` (the body for 200,
/// empty for a refusal whose JSON body the error middleware renders).
fn signed(
    state: &AppState,
    nonce: [u8; sync::NONCE_LEN],
    mut response: Response,
    fields: [&str; sync::RESPONSE_FIELDS.len()],
    signed_body: &[u8],
) -> Response {
    let status: StatusCode = response.status();
    let now_secs = state.now().as_millis().div_euclid(1000);
    let signature = sync::sign_response(
        &state.edge_secret,
        now_secs,
        &nonce,
        &SignedResponse {
            status: status.as_u16(),
            fields,
            body: signed_body,
        },
    );
    let headers = response.headers_mut();
    for (name, value) in sync::RESPONSE_FIELDS.iter().zip(fields) {
        if let (false, Ok(value)) = (value.is_empty(), HeaderValue::from_str(value)) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&signature) {
        headers.insert(
            HeaderName::from_static(sync::RESPONSE_SIGNATURE_HEADER),
            value,
        );
    }
    response
}
