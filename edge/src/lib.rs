//! Keyplane's edge worker: the Cloudflare Worker that stands in front of a team's API.
//!
//! This is the skeleton: it answers the health check and refuses every other request
//! with Keyplane's 401 error body. The full decision (key format, digest, table lookup,
//! scopes, rate limit, forwarding to the origin) comes from `keyplane-shared` later.
//!
//! Layout:
//! - [`credentials`]: finds the API key a caller presented (`x-api-key`, else `Authorization: Bearer`).
//! - [`reply`]: builds the JSON answers and their headers, never panicking.
//!
//! A panic aborts the whole Worker instance, so nothing on the request path may `unwrap`.

pub mod credentials;
pub mod reply;

use worker::{Context, Env, Method, Request, Response, Result, event};

/// Path of the edge's own health check; it never needs a key.
pub const HEALTH_PATH: &str = "/__keyplane/health";

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Get && req.path() == HEALTH_PATH {
        return reply::health();
    }
    let request_id = reply::new_request_id();
    match credentials::presented_key(req.headers()) {
        // RFC 6750 §3.1: a request without credentials gets a bare challenge.
        None => reply::missing_api_key(&request_id),
        // No key table is replicated to the edge yet, so no key can be valid: fail closed.
        Some(_key) => reply::invalid_api_key(&request_id),
    }
}
