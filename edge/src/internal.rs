//! The edge's own endpoints under `/__keyplane/` (reserved: never forwarded to the origin).
//!
//! - `GET /__keyplane/health`: `{"status":"ok"}`, no key needed, says nothing else.
//! - `POST /__keyplane/sync`: a change batch pushed by the control plane, signed (see
//!   `keyplane_shared::sync`). Unsigned, badly signed, stale, replayed (nonce seen before) or
//!   malformed pushes are refused and change nothing. Answers `{"applied_seq": N}`.
//! - `GET /__keyplane/status`: signed like a push; this isolate's applied sequence, key count
//!   and usage-reporting figures (buffered, sent, dropped, unattributed, failures).

use keyplane_shared::ids::RequestId;
use keyplane_shared::sync::{self, REPLAY_WINDOW_SECS, SignedRequest};
use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, console_error};

use crate::replica;
use crate::reply;
use crate::settings::{self, Settings};
use crate::store;
use crate::usage;

/// Prefix of every internal path.
pub const PREFIX: &str = "/__keyplane/";
/// Largest accepted push body (10,000 changes are ~1.3 MB).
pub const MAX_PUSH_BYTES: usize = 8 << 20;

/// Routes an internal request.
pub async fn handle(mut req: Request, env: Env) -> Result<Response> {
    let request_id = RequestId::generate()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "req_unavailable".to_owned());
    let path = req.path();
    if req.method() == Method::Get && path == "/__keyplane/health" {
        return reply::health();
    }
    let settings = match settings::load(&env) {
        Ok(settings) => settings,
        Err(error) => {
            console_error!("{error}");
            return reply::failure(500, "edge_misconfigured", &request_id);
        }
    };
    match (req.method(), path.as_str()) {
        (Method::Post, "/__keyplane/sync") => {
            let too_big = req
                .headers()
                .get("content-length")?
                .and_then(|value| value.parse::<usize>().ok())
                .is_some_and(|length| length > MAX_PUSH_BYTES);
            if too_big {
                return reply::failure(413, "payload_too_large", &request_id);
            }
            let body = req.bytes().await?;
            if body.len() > MAX_PUSH_BYTES {
                return reply::failure(413, "payload_too_large", &request_id);
            }
            let Some(verified) = check_signature(&req, &settings, "POST", &body)? else {
                return reply::failure(401, "invalid_signature", &request_id);
            };
            push(&env, &verified, body, &request_id).await
        }
        (Method::Get, "/__keyplane/status") => {
            if check_signature(&req, &settings, "GET", &[])?.is_none() {
                return reply::failure(401, "invalid_signature", &request_id);
            }
            if let Err(error) = replica::refresh(&env).await {
                console_error!("refreshing the key table failed: {error}");
            }
            let (applied_seq, keys) = replica::status();
            Response::from_json(&json!({
                "edge": settings.edge_name,
                "applied_seq": applied_seq,
                "keys": keys,
                "usage": usage::stats(),
            }))
        }
        _ => reply::failure(404, "not_found", &request_id),
    }
}

fn check_signature(
    req: &Request,
    settings: &Settings,
    method: &str,
    body: &[u8],
) -> Result<Option<sync::Verified>> {
    let url = req.url()?;
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let header = req.headers().get(sync::SIGNATURE_HEADER)?;
    let now_secs = (worker::Date::now().as_millis() / 1000) as i64;
    Ok(sync::verify(
        &settings.sync_secret,
        header.as_deref(),
        now_secs,
        &SignedRequest {
            method,
            path_and_query: &path_and_query,
            body,
        },
    )
    .ok())
}

/// Hands a verified push to the store, then brings this isolate up to date before answering.
async fn push(
    env: &Env,
    verified: &sync::Verified,
    body: Vec<u8>,
    request_id: &str,
) -> Result<Response> {
    let headers = Headers::new();
    headers.set(store::NONCE_HEADER, &sync::hex(&verified.nonce))?;
    let forget_after_ms = (verified.timestamp + REPLAY_WINDOW_SECS + 1) * 1000;
    headers.set(store::NONCE_EXPIRES_HEADER, &forget_after_ms.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys_bytes(&body)));
    let stub = env
        .durable_object(store::BINDING)?
        .get_by_name(store::STORE_NAME)?;
    let mut answer = stub
        .fetch_with_request(Request::new_with_init("https://store/sync", &init)?)
        .await?;
    let status = answer.status_code();
    let text = answer.text().await?;
    if status != 200 {
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| value["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "store_failed".to_owned());
        let status = if code == "replayed_request" {
            401
        } else {
            status
        };
        return reply::failure(status, &code, request_id);
    }
    if let Err(error) = replica::refresh(env).await {
        console_error!("refreshing the key table after a push failed: {error}");
    }
    Ok(Response::ok(text)?.with_headers({
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers
    }))
}

fn js_sys_bytes(bytes: &[u8]) -> worker::wasm_bindgen::JsValue {
    worker::js_sys::Uint8Array::from(bytes).into()
}
