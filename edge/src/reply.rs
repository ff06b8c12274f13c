//! The edge's own answers: the health check and refusals (JSON error body plus challenge).
//!
//! Error bodies follow the design: `{"error":{"code","message","request_id"}}`. The
//! `WWW-Authenticate` challenge is bare when no credentials were sent and carries
//! `error="invalid_token"` for a bad key (RFC 6750 §3.1).

use keyplane_shared::Denial;
use serde::Serialize;
use worker::{Headers, Response, Result};

/// The realm every challenge names.
pub const REALM: &str = "keyplane";

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

/// `200 {"status":"ok"}`.
pub fn health() -> Result<Response> {
    Response::from_json(&serde_json::json!({ "status": "ok" }))
}

/// The refusal for `denial`: its status, the JSON error body and, for 401/403, the challenge.
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
    headers.set("cache-control", "no-store")?;
    headers.set("x-keyplane-request-id", request_id)?;
    Ok(Response::from_json(&body)?
        .with_status(denial.status())
        .with_headers(headers))
}

/// A fresh request id, `req_` + 32 hex digits from the platform CSPRNG.
///
/// Should the CSPRNG fail, the id degrades to zeros rather than failing the request:
/// the id is for correlating logs, not a secret.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    let mut id = String::with_capacity(4 + 32);
    id.push_str("req_");
    for byte in bytes {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_prefixed_hex_and_distinct() {
        let a = new_request_id();
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("req_"));
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_request_id());
    }
}
