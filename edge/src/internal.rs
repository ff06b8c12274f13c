//! The edge's own endpoints under `/__keyplane/` (reserved: never forwarded to the origin).
//!
//! - `GET /__keyplane/health`: `{"status":"ok"}`, no key needed, says nothing else.
//! - `POST /__keyplane/sync?edge=<name>&history=<hst_…>&after=<N>&chain=<hex>`: a change batch
//!   pushed by the control plane, signed over all of that (see `keyplane_shared::sync`). The
//!   signature header is checked for shape and age before the body is read, and the body is
//!   read only up to [`sync::MAX_PUSH_BYTES`] (a declared length or a chunked stream past it:
//!   413).
//!   Unsigned, badly signed, stale, replayed (nonce seen before) or malformed pushes are
//!   refused and change nothing; so is a push named for another edge (421
//!   `misdirected_push`: two edges given one URL, or a push captured at another edge) and one
//!   of another feed history (409 `history_diverged`); one that arrives while the store
//!   replaces its table is answered 503 `table_reloading`. Answers `{"applied_seq": N}`.
//! - `GET /__keyplane/status`: signed like a push; this isolate's applied sequence, key count,
//!   store generation, feed history and usage-reporting figures (and the usage events still
//!   waiting for their origin's answer), and the reads of the store that kept its copy fresh
//!   (`store_reads`: in the background, and the ones requests waited for).

use futures_util::StreamExt as _;
use keyplane_shared::FeedChain;
use keyplane_shared::ids::{HistoryId, RequestId};
use keyplane_shared::sync::{self, REPLAY_WINDOW_SECS, SignedRequest};
use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, Url, console_error};

use crate::replica;
use crate::reply;
use crate::settings::{self, Settings};
use crate::store;
use crate::usage;

/// Prefix of every internal path.
pub const PREFIX: &str = "/__keyplane/";

/// Routes an internal request.
pub async fn handle(mut req: Request, env: Env) -> Result<Response> {
    let request_id = RequestId::generate()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| keyplane_shared::ids::UNAVAILABLE_REQUEST_ID.to_owned());
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
            let now_secs = crate::unix_secs();
            let header = req.headers().get(sync::SIGNATURE_HEADER)?;
            if sync::precheck(header.as_deref(), now_secs).is_err() {
                // Unsigned, malformed or stale: refused before a byte of the body is read (a
                // forged header of the right shape gets as far as the bounded read below).
                return reply::failure(401, "invalid_signature", &request_id);
            }
            let Some(body) = read_bounded(&mut req, sync::MAX_PUSH_BYTES).await? else {
                return reply::failure(413, "payload_too_large", &request_id);
            };
            let Some(verified) = check_signature(&req, &settings, "POST", &body)? else {
                return reply::failure(401, "invalid_signature", &request_id);
            };
            let Some(target) = PushTarget::from_url(&req.url()?) else {
                return reply::failure(400, "malformed_push", &request_id);
            };
            if target.edge != settings.edge_name {
                console_error!(
                    "refused a push meant for edge {:?} (this is {:?}): are two edges given one URL?",
                    target.edge,
                    settings.edge_name
                );
                return reply::failure(421, "misdirected_push", &request_id);
            }
            push(&env, &verified, &target, body, &request_id).await
        }
        (Method::Get, "/__keyplane/status") => {
            if check_signature(&req, &settings, "GET", &[])?.is_none() {
                return reply::failure(401, "invalid_signature", &request_id);
            }
            if let Err(error) = replica::refresh(&env).await {
                console_error!("refreshing the key table failed: {error}");
            }
            let (applied_seq, keys, generation, history) = replica::status();
            let stored = stored_in_store(&env).await.unwrap_or_else(|error| {
                console_error!("reading the store's storage figures failed: {error}");
                serde_json::Value::Null
            });
            Response::from_json(&json!({
                "edge": settings.edge_name,
                "applied_seq": applied_seq,
                "keys": keys,
                "generation": generation,
                "history": history,
                "usage": usage::stats(),
                // Reads of the store that kept this isolate's copy fresh.
                "store_reads": replica::reads(),
                // Usage events of requests still at the origin (`forward`): back to 0 once
                // every answer has come.
                "usage_awaiting_answers": crate::forward::waiting(),
                "wasm_memory_bytes": wasm_memory_bytes(),
                "store": stored,
            }))
        }
        _ => reply::failure(404, "not_found", &request_id),
    }
}

/// What the key table store's storage holds (its `GET /stored`).
async fn stored_in_store(env: &Env) -> Result<serde_json::Value> {
    let stub = env
        .durable_object(store::BINDING)?
        .get_by_name(store::STORE_NAME)?;
    stub.fetch_with_str("https://store/stored")
        .await?
        .json()
        .await
}

/// The isolate's WebAssembly linear memory, in bytes. Everything the worker's Rust side holds
/// (the key table, the rate limiter, buffered usage events) lives there, and linear memory
/// never shrinks: over a long run, its size shows whether the worker keeps what it should let
/// go, apart from what the JavaScript runtime around it does.
pub(crate) fn wasm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        // Pages of 64 KiB; a u64, since 4 GiB of them overflow wasm32's usize.
        core::arch::wasm32::memory_size(0) as u64 * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// What a push's signed query names: the edge it is for, and where its changes start.
struct PushTarget {
    edge: String,
    history: HistoryId,
    after: u64,
    chain: FeedChain,
}

impl PushTarget {
    fn from_url(url: &Url) -> Option<Self> {
        let query = |name: &str| crate::query_param(url, name);
        Some(PushTarget {
            edge: query("edge")?,
            history: HistoryId::parse(&query("history")?).ok()?,
            after: query("after")?.parse().ok()?,
            chain: FeedChain::parse_hex(&query("chain")?)?,
        })
    }
}

/// The body, or `None` when it is longer than `limit` bytes (by its declared length, or once
/// that many bytes of a stream without one have arrived: nothing past the limit is read).
async fn read_bounded(req: &mut Request, limit: usize) -> Result<Option<Vec<u8>>> {
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(Some(body));
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
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
    let now_secs = crate::unix_secs();
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
    target: &PushTarget,
    body: Vec<u8>,
    request_id: &str,
) -> Result<Response> {
    let headers = Headers::new();
    headers.set(store::NONCE_HEADER, &sync::hex(&verified.nonce))?;
    let forget_after_ms = (verified.timestamp + REPLAY_WINDOW_SECS + 1) * 1000;
    headers.set(store::NONCE_EXPIRES_HEADER, &forget_after_ms.to_string())?;
    headers.set(store::PUSH_HISTORY_HEADER, &target.history.to_string())?;
    headers.set(store::PUSH_AFTER_HEADER, &target.after.to_string())?;
    headers.set(store::PUSH_CHAIN_HEADER, &target.chain.to_hex())?;
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
