//! The request path: decide with `shared`, then forward to the origin or refuse.
//!
//! Allowed requests reach the origin with the identity headers (`x-keyplane-key-id`,
//! `-org-id`, `-scopes`, `-env`, `-request-id`). Every `x-keyplane-*` header the caller sent is
//! dropped first, and so is the credential Keyplane consumed (`x-api-key`, or the
//! `Authorization: Bearer` header when the key came from there): the origin never sees a key.

use keyplane_shared::Timestamp;
use keyplane_shared::decision::RequestFacts;
use keyplane_shared::ids::RequestId;
use worker::{
    Context, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response, Result,
    console_error,
};

use crate::replica::{self, Verdict};
use crate::reply;
use crate::settings::{self, Settings};

/// Handles one request from the internet.
pub async fn handle(req: Request, env: Env, ctx: &Context) -> Result<Response> {
    let request_id = RequestId::generate()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "req_unavailable".to_owned());
    let settings = match settings::load(&env) {
        Ok(settings) => settings,
        Err(error) => {
            console_error!("{error}");
            return reply::failure(500, "edge_misconfigured", &request_id);
        }
    };
    if !replica::is_loaded()
        && let Err(error) = replica::refresh(&env).await
    {
        console_error!("loading the key table failed: {error}");
        return reply::failure(503, "edge_unavailable", &request_id);
    }
    let now_ms = worker::Date::now().as_millis();
    if replica::claim_refresh(now_ms as f64, settings.replica_refresh_ms) {
        let env = env.clone();
        ctx.wait_until(async move {
            if let Err(error) = replica::refresh(&env).await {
                console_error!("refreshing the key table failed: {error}");
            }
        });
    }

    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (x_api_key, authorization) = (header("x-api-key"), header("authorization"));
    let (method, path) = (req.method(), req.path());
    let facts = RequestFacts {
        x_api_key: x_api_key.as_deref(),
        authorization: authorization.as_deref(),
        method: method.as_ref(),
        path: &path,
    };
    let now = Timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX));
    let identity = match replica::decide_request(&facts, now, &settings.decision) {
        Verdict::Deny(denial) => return reply::denied(&denial, &request_id),
        Verdict::Public => Vec::new(),
        Verdict::Allow(identity) => identity,
    };
    let key_from_authorization = x_api_key.as_deref().is_none_or(|key| key.trim().is_empty());
    forward(
        req,
        &settings,
        &identity,
        key_from_authorization,
        &request_id,
    )
    .await
}

/// Sends the request on to the origin and relays its answer.
async fn forward(
    req: Request,
    settings: &Settings,
    identity: &[(&'static str, String)],
    key_from_authorization: bool,
    request_id: &str,
) -> Result<Response> {
    let url = req.url()?;
    let mut target = format!("{}{}", settings.origin_url, url.path());
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        let consumed = name == "x-api-key" || (name == "authorization" && key_from_authorization);
        if consumed || name.starts_with("x-keyplane-") || name == "host" {
            continue;
        }
        headers.append(&name, &value)?;
    }
    for (name, value) in identity {
        headers.set(name, value)?;
    }
    headers.set("x-keyplane-request-id", request_id)?;
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone())
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(Into::into));
    }
    let answer = match Request::new_with_init(&target, &init) {
        Ok(outgoing) => Fetch::Request(outgoing).send().await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(response) => relay(response, request_id),
        Err(error) => {
            console_error!("forwarding to the origin failed: {error}");
            reply::failure(502, "origin_unavailable", request_id)
        }
    }
}

/// The origin's answer with the request id added (its own headers are immutable).
fn relay(response: Response, request_id: &str) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.append(&name, &value)?;
    }
    headers.set("x-keyplane-request-id", request_id)?;
    let status = response.status_code();
    let (_, body) = response.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}
