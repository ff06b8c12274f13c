//! The request path: decide with `shared`, then forward to the origin or refuse.
//!
//! Allowed requests reach the origin with the identity headers (`x-keyplane-key-id`,
//! `-org-id`, `-scopes`, `-env`, `-request-id`). Every `x-keyplane-*` header the caller sent is
//! dropped first, and so is the credential Keyplane consumed (`x-api-key`, or the
//! `Authorization: Bearer` header when the key came from there): the origin never sees a key.

use keyplane_shared::Timestamp;
use keyplane_shared::decision::RequestFacts;
use keyplane_shared::ids::RequestId;
use keyplane_shared::usage::UsageEvent;
use worker::js_sys::{self, futures::JsFuture};
use worker::wasm_bindgen::JsCast;
use worker::{Context, Env, Request, Result, console_error, web_sys};

use crate::replica::{self, Decided, Verdict};
use crate::settings::{self, RateLimitMode, Settings};
use crate::{limiter, reply, usage};

/// Handles one request from the internet.
pub async fn handle(req: Request, env: Env, ctx: &Context) -> Result<web_sys::Response> {
    let request_id = RequestId::generate().ok();
    let request_id_text =
        request_id.map_or_else(|| "req_unavailable".to_owned(), |id| id.to_string());
    let settings = match settings::load(&env) {
        Ok(settings) => settings,
        Err(error) => {
            console_error!("{error}");
            return reply::failure(500, "edge_misconfigured", &request_id_text).map(Into::into);
        }
    };
    if !replica::is_loaded()
        && let Err(error) = replica::refresh(&env).await
    {
        console_error!("loading the key table failed: {error}");
        return reply::failure(503, "edge_unavailable", &request_id_text).map(Into::into);
    }
    let now_ms = worker::Date::now().as_millis();
    let now = Timestamp(i64::try_from(now_ms).unwrap_or(i64::MAX));
    if replica::claim_refresh(now_ms as f64, settings.replica_refresh_ms) {
        replica::prune_limiter(now);
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
    let count_here = settings.rate_limit_mode == RateLimitMode::Isolate;
    let verdict = match replica::decide_request(&facts, now, &settings.decision, count_here) {
        Decided::Done(verdict) => verdict,
        Decided::Uncounted(admitted) => {
            match limiter::check(&env, admitted.key.0, admitted.limit).await {
                Ok(outcome) => replica::settle(admitted, outcome),
                Err(error) => {
                    console_error!(
                        "global rate limiter unreachable, counting in this isolate: {error}"
                    );
                    replica::count_locally(admitted, now)
                }
            }
        }
    };
    let key_from_authorization = x_api_key.as_deref().is_none_or(|key| key.trim().is_empty());
    let (key, response) = match verdict {
        Verdict::Deny { denial, key } => (key, reply::denied(&denial, &request_id_text)?.into()),
        Verdict::Public => (
            None,
            forward(
                &req,
                &settings,
                &[],
                &[],
                key_from_authorization,
                &request_id_text,
            )
            .await?,
        ),
        Verdict::Allow(admitted, outcome) => {
            let response = forward(
                &req,
                &settings,
                &admitted.identity,
                &outcome.headers(),
                key_from_authorization,
                &request_id_text,
            )
            .await?;
            (Some(admitted.key), response)
        }
    };
    if settings.usage.enabled
        && let Some(request_id) = request_id
    {
        let client_ip = header("cf-connecting-ip");
        let event = UsageEvent::new(
            request_id,
            key,
            now,
            method.as_ref(),
            &path,
            response.status(),
            client_ip.as_deref(),
        );
        usage::record(event, settings.usage.buffer_max);
        if let Some(claim) = usage::claim_flush(now_ms as f64) {
            let settings = settings.clone();
            ctx.wait_until(async move { usage::flush(claim, &settings).await });
        }
    }
    Ok(response)
}

/// Sends the request on to the origin and relays its answer.
///
/// Works on the raw `web_sys` objects: the headers are copied by the runtime in one call
/// (`new Headers(incoming)`) and only the names are walked from Rust, so an allowed request
/// crosses the JS boundary a handful of times rather than twice per header.
async fn forward(
    req: &Request,
    settings: &Settings,
    identity: &[(&'static str, String)],
    rate_limit: &[(&'static str, String)],
    key_from_authorization: bool,
    request_id: &str,
) -> Result<web_sys::Response> {
    let incoming = req.inner();
    let target = format!("{}{}", settings.origin_url, path_and_query(&incoming.url()));
    let headers = web_sys::Headers::new_with_headers(&incoming.headers())?;
    let mut dropped: Vec<String> = Vec::new();
    if let Ok(Some(names)) = js_sys::try_iter(&headers.keys()) {
        for name in names.flatten().filter_map(|name| name.as_string()) {
            if is_dropped(&name, key_from_authorization) {
                dropped.push(name);
            }
        }
    }
    for name in &dropped {
        headers.delete(name)?;
    }
    for (name, value) in identity {
        headers.set(name, value)?;
    }
    headers.set("x-keyplane-request-id", request_id)?;
    let method = incoming.method();
    let init = web_sys::RequestInit::new();
    init.set_method(&method);
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if method != "GET"
        && method != "HEAD"
        && let Some(body) = incoming.body()
    {
        init.set_body(&body);
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let answer = JsFuture::from(scope.fetch_with_str_and_init(&target, &init))
        .await
        .and_then(|response| response.dyn_into::<web_sys::Response>());
    match answer {
        Ok(response) => relay(&response, rate_limit, request_id),
        Err(error) => {
            console_error!("forwarding to the origin failed: {error:?}");
            reply::failure(502, "origin_unavailable", request_id).map(Into::into)
        }
    }
}

/// Whether a header the caller sent stays away from the origin: every `x-keyplane-*` (only
/// the edge sets those), the consumed credential, and `host` (the origin's URL decides it).
/// Header names come lower-cased from the runtime.
fn is_dropped(name: &str, key_from_authorization: bool) -> bool {
    name == "x-api-key"
        || (name == "authorization" && key_from_authorization)
        || name == "host"
        || name.starts_with("x-keyplane-")
}

/// The path and query of an absolute URL as the runtime serializes it (`https://h/p?q` →
/// `/p?q`); the fragment, never sent by clients, is left out.
fn path_and_query(url: &str) -> &str {
    let Some(after_scheme) = url.find("://").map(|at| at + 3) else {
        return "/";
    };
    let rest = &url[after_scheme..];
    let Some(path_start) = rest.find('/') else {
        return "/";
    };
    let path = &rest[path_start..];
    &path[..path.find('#').unwrap_or(path.len())]
}

/// The origin's answer with the rate-limit fields and the request id added: a new response over the same body stream,
/// its headers copied by the runtime (the origin's own are immutable).
fn relay(
    origin: &web_sys::Response,
    rate_limit: &[(&'static str, String)],
    request_id: &str,
) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new_with_headers(&origin.headers())?;
    for (name, value) in rate_limit {
        headers.set(name, value)?;
    }
    headers.set("x-keyplane-request-id", request_id)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(origin.status());
    init.set_status_text(&origin.status_text());
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        origin.body().as_ref(),
        &init,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_keeps_the_query_and_drops_the_fragment() {
        assert_eq!(
            path_and_query("https://api.example.com/v1/x?a=1&b=2"),
            "/v1/x?a=1&b=2"
        );
        assert_eq!(path_and_query("http://127.0.0.1:8787/"), "/");
        assert_eq!(path_and_query("https://h.example"), "/");
        assert_eq!(path_and_query("https://h.example/p#frag"), "/p");
        assert_eq!(path_and_query("https://h.example/p?q=%2F#f"), "/p?q=%2F");
        assert_eq!(path_and_query("not a url"), "/");
    }

    #[test]
    fn identity_headers_and_the_consumed_credential_are_dropped() {
        assert!(is_dropped("x-keyplane-key-id", false));
        assert!(is_dropped("x-keyplane-anything", false));
        assert!(is_dropped("x-api-key", false));
        assert!(is_dropped("host", false));
        assert!(is_dropped("authorization", true));
        assert!(!is_dropped("authorization", false));
        assert!(!is_dropped("accept", true));
        assert!(!is_dropped("x-keyplane", true));
    }
}
