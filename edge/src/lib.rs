//! Keyplane's edge worker: the Cloudflare Worker that stands in front of a team's API.
//!
//! This is the skeleton: it answers the health check and refuses every other request
//! with Keyplane's 401 error body. The full decision (key format, digest, table lookup,
//! scopes, rate limit, forwarding to the origin) comes from `keyplane-shared` later.
//!
//! Layout:
//! - [`reply`]: builds the JSON answers and their headers, never panicking.
//!
//! Finding the presented key (`x-api-key`, else `Authorization: Bearer`) and the wording of every
//! refusal come from `keyplane_shared::decision`, so the edge and its tests agree with the core.
//!
//! A panic aborts the whole Worker instance, so nothing on the request path may `unwrap`.

pub mod reply;

use keyplane_shared::decision::{Denial, RequestFacts, extract_key};
use worker::{Context, Env, Method, Request, Response, Result, event};

/// Path of the edge's own health check; it never needs a key.
pub const HEALTH_PATH: &str = "/__keyplane/health";

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Get && req.path() == HEALTH_PATH {
        return reply::health();
    }
    let request_id = reply::new_request_id();
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (x_api_key, authorization) = (header("x-api-key"), header("authorization"));
    let (method, path) = (req.method(), req.path());
    let facts = RequestFacts {
        x_api_key: x_api_key.as_deref(),
        authorization: authorization.as_deref(),
        method: method.as_ref(),
        path: &path,
    };
    let denial = match extract_key(&facts) {
        // RFC 6750 §3.1: a request without credentials gets a bare challenge.
        None => Denial::MissingKey,
        // No key table is replicated to the edge yet, so no key can be valid: fail closed.
        Some(_) => Denial::InvalidKey,
    };
    reply::denied(&denial, &request_id)
}
