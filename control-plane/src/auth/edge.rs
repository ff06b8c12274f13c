//! Requests from edges, authenticated by their signature (HMAC-SHA256 with the edge secret,
//! within the replay window) over the method, the path and query exactly as received, and the
//! body; any problem is one 401 `invalid_signature`. The feed's GETs take [`SignedByEdge`];
//! usage ingestion, which bounds its body before reading it, checks with [`verify_edge_request`]
//! once the body is read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use keyplane_shared::sync::{self, SignedRequest};

use crate::error::ApiError;
use crate::state::AppState;

/// A GET signed by an edge (empty body); holds the request's nonce, which its answer is signed
/// for.
#[derive(Debug, Clone, Copy)]
pub struct SignedByEdge {
    /// The nonce the request was signed with.
    pub nonce: [u8; sync::NONCE_LEN],
}

impl FromRequestParts<AppState> for SignedByEdge {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verified = verify_edge_request(state, &parts.headers, "GET", &parts.uri, &[])?;
        Ok(SignedByEdge {
            nonce: verified.nonce,
        })
    }
}

/// Checks an edge request's signature over `method`, the path and query of `uri` as received,
/// and `body`.
pub fn verify_edge_request(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<sync::Verified, ApiError> {
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
            method,
            path_and_query,
            body,
        },
    )
    .map_err(|_| ApiError::InvalidSignature)
}
