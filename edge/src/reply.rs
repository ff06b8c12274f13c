//! The edge's own answers: the health check and the 401 error bodies with their challenges.
//!
//! Error bodies follow the design: `{"error":{"code","message","request_id"}}`. The
//! `WWW-Authenticate` challenge is bare when no credentials were sent and carries
//! `error="invalid_token"` for a bad key (RFC 6750 §3.1).

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

/// 401 for a request that carried no key, with a bare Bearer challenge.
pub fn missing_api_key(request_id: &str) -> Result<Response> {
    unauthorized(
        "missing_api_key",
        "This API needs an API key: send it in the x-api-key header or as Authorization: Bearer <key>.",
        request_id,
        &format!("Bearer realm=\"{REALM}\""),
    )
}

/// 401 for a key that is not valid; the body never says why (unknown key and wrong secret look alike).
pub fn invalid_api_key(request_id: &str) -> Result<Response> {
    unauthorized(
        "invalid_api_key",
        "The API key is not valid.",
        request_id,
        &format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
    )
}

fn unauthorized(code: &str, message: &str, request_id: &str, challenge: &str) -> Result<Response> {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            request_id,
        },
    };
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("www-authenticate", challenge)?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-keyplane-request-id", request_id)?;
    Ok(Response::from_json(&body)?
        .with_status(401)
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
