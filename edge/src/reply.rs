//! The edge's own answers: the health check and refusals (JSON error body plus challenge).
//!
//! Error bodies follow the design: `{"error":{"code","message","request_id"}}`. The
//! `WWW-Authenticate` challenge is bare when no credentials were sent and carries
//! `error="invalid_token"` for a bad key (RFC 6750 §3.1).

use keyplane_shared::Denial;
use keyplane_shared::decision::REALM;
use serde::Serialize;
use worker::{Headers, Response, Result};

use crate::decide::REQUEST_ID_HEADER;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
}

/// A failure that is not about the caller's key (`edge_misconfigured`, `edge_unavailable`,
/// `origin_unavailable`, `invalid_signature`, …): the JSON error body, no challenge.
pub fn failure(status: u16, code: &str, request_id: &str) -> Result<Response> {
    let message = match code {
        "edge_misconfigured" => {
            "The edge is misconfigured; nothing is forwarded until it is fixed."
        }
        "edge_unavailable" => "The edge could not load its key table. Retry shortly.",
        "origin_unavailable" => "The origin could not be reached.",
        "invalid_signature" => {
            "The request is not signed with the edge secret, or the signature is stale or replayed."
        }
        "payload_too_large" => "The request body is too large.",
        "ambiguous_path" => {
            "The request path is ambiguous (an encoded dot segment or slash, a backslash, an empty segment or a control character); send it in plain form."
        }
        "not_found" => "No such edge endpoint.",
        "table_reloading" => "The edge is replacing its key table; retry shortly.",
        _ => "The request could not be handled.",
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            request_id,
        },
    };
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    headers.set(REQUEST_ID_HEADER, request_id)?;
    Ok(Response::from_json(&body)?
        .with_status(status)
        .with_headers(headers))
}

/// `200 {"status":"ok"}`.
pub fn health() -> Result<Response> {
    Response::from_json(&serde_json::json!({ "status": "ok" }))
}

/// The refusal for `denial`: its status, the JSON error body and, for 401/403, the challenge;
/// for 429, `Retry-After` and the rate-limit header fields.
pub fn denied(denial: &Denial, request_id: &str) -> Result<Response> {
    let message = denial.message();
    let body = ErrorBody {
        error: ErrorDetail {
            code: denial.code(),
            message: &message,
            request_id,
        },
    };
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(challenge) = denial.www_authenticate(REALM) {
        headers.set("www-authenticate", &challenge)?;
    }
    if let Denial::RateLimited(outcome) = denial {
        for (name, value) in outcome.headers() {
            headers.set(name, &value)?;
        }
    }
    headers.set("cache-control", "no-store")?;
    headers.set(REQUEST_ID_HEADER, request_id)?;
    Ok(Response::from_json(&body)?
        .with_status(denial.status())
        .with_headers(headers))
}
