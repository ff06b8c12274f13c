//! The request path: decide with `shared`, then forward to the origin or refuse.
//!
//! One path, decided and forwarded: the request's path and query are read once, in their
//! canonical form (`keyplane_shared::path`: what the runtime's URL parser makes of them); the
//! decision is made on that form and the origin's URL is built from exactly that form, so the
//! origin receives the bytes the decision saw. A path other readers could take another way
//! (an encoded dot segment or separator, a `\`, an empty segment, a control character) is
//! refused with 400 `ambiguous_path` unless `PATH_NORMALIZATION = "resolve"`.
//!
//! Allowed requests reach the origin with the identity headers (`x-keyplane-key-id`,
//! `-org-id`, `-scopes`, `-env`, `-request-id`). Every `x-keyplane-*` header the caller sent is
//! dropped first, and so are `x-api-key`, an `Authorization` header carrying a Keyplane key in
//! any form, and the method-override headers: the origin never sees a key (its own credentials
//! pass through), nor a method other than the one decided on.
//!
//! The common case is synchronous: with the table in memory and the isolate's own rate
//! limiter, [`handle`] decides, builds the outgoing request and returns a `Forward`; the
//! entry module (`edge/js/shim.mjs`) fetches it and relays the origin's answer with the fields
//! the Forward lists (see `crate::forward`). No Rust future, executor or closure runs per
//! request, which is most of what entering wasm costs (README, edge overhead). A request that finds its isolate's copy of the table missing (the isolate's
//! first) or older than `REPLICA_FRESHNESS_MS` (it first reads what changed from the store),
//! and the global rate-limit mode (a Durable Object round trip), take the same steps
//! asynchronously: the answer is then a `Promise`.

use std::rc::Rc;

use keyplane_shared::Timestamp;
use keyplane_shared::decision::{Decision, RequestFacts};
use keyplane_shared::ids::{KeyId, OrgId, RequestId};
use keyplane_shared::path::{Ambiguity, CanonicalTarget};
use keyplane_shared::usage::UsageEvent;
use worker::js_sys::{self, Promise, futures::JsFuture, futures::future_to_promise};
use worker::wasm_bindgen::JsValue;
use worker::{Context, Env, console_error, web_sys};

use crate::decide::{self, Decided, REQUEST_ID_HEADER};
use crate::headers::{self, Edits};
use crate::replica::{self, Freshness};
use crate::settings::{self, PathNormalization, RateLimitHeaders, RateLimitMode, Settings};
use crate::{forward, limiter, reply, usage};

/// Where a request stands after the synchronous part of the gate.
pub enum Step {
    /// The edge answered.
    Answer(web_sys::Response),
    /// The origin is to be fetched: the entry module's `Forward` (see `crate::forward`).
    Forward(JsValue),
    /// The asynchronous path: a `Promise` of the `Response`.
    Pending(Promise),
}

impl From<Step> for JsValue {
    /// What the entry module gets: a `Response`, a `Forward` (fetch its request, relay the
    /// answer, report its status), or a `Promise` of a `Response`.
    fn from(step: Step) -> JsValue {
        match step {
            Step::Answer(response) => response.into(),
            Step::Forward(forward) => forward,
            Step::Pending(promise) => promise.into(),
        }
    }
}

/// The parts of the incoming request the gate reads, read once.
struct Incoming {
    request: web_sys::Request,
    headers: web_sys::Headers,
    request_id: Option<RequestId>,
    request_id_text: String,
    method: String,
    /// The URL's path and query in canonical form (`/p?q`): decided on and forwarded.
    path_and_query: String,
    /// What the raw path did that other readers could take another way.
    ambiguity: Option<Ambiguity>,
    x_api_key: Option<String>,
    authorization: Option<String>,
    now_ms: f64,
}

impl Incoming {
    fn read(request: web_sys::Request, url: String) -> Self {
        let headers = request.headers();
        let header = |name: &str| headers.get(name).ok().flatten();
        let now_ms = js_sys::Date::now();
        // Time-ordered, so the control plane's usage table appends instead of writing all
        // over its request-id index (see `RequestId::generate_ordered`); the random part comes
        // from the isolate's pool (`entropy`).
        let request_id = crate::entropy::random()
            .map(|random| RequestId::ordered(Timestamp(now_ms as i64), random))
            .ok();
        let target = read_target(&url);
        Incoming {
            request_id_text: request_id.map_or_else(
                || keyplane_shared::ids::UNAVAILABLE_REQUEST_ID.to_owned(),
                |id| id.to_string(),
            ),
            request_id,
            method: request.method(),
            ambiguity: target.ambiguity(),
            // One copy, as before: the canonical form borrows the URL when it is canonical.
            path_and_query: target.into_text().into_owned(),
            x_api_key: header("x-api-key"),
            authorization: header("authorization"),
            now_ms,
            request,
            headers,
        }
    }

    fn path(&self) -> &str {
        let end = self
            .path_and_query
            .find('?')
            .unwrap_or(self.path_and_query.len());
        &self.path_and_query[..end]
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms as i64)
    }

    /// The 400 `ambiguous_path` answer, when the path is ambiguous and the settings refuse
    /// such paths (recorded as usage like any refusal).
    fn path_refusal(&self, settings: &Rc<Settings>, ctx: &Context) -> Option<Step> {
        if !refuses(settings.path_normalization, self.ambiguity) {
            return None;
        }
        self.record_usage(settings, ctx, None, 400, true);
        Some(failure(400, "ambiguous_path", &self.request_id_text))
    }

    /// Records this request's usage event (when reporting is on) and starts the flusher if
    /// none is running.
    fn record_usage(
        &self,
        settings: &Rc<Settings>,
        ctx: &Context,
        key: Option<(KeyId, OrgId)>,
        status: u16,
        refused: bool,
    ) {
        if let Some(event) = self.usage_event(settings, key, status) {
            record_event(event, settings, ctx, refused);
        }
    }

    /// This request's usage event with `status`; `None` when reporting is off (or the request
    /// has no id).
    fn usage_event(
        &self,
        settings: &Settings,
        key: Option<(KeyId, OrgId)>,
        status: u16,
    ) -> Option<UsageEvent> {
        let request_id = self.request_id.filter(|_| settings.usage.enabled)?;
        let client_ip = self.headers.get("cf-connecting-ip").ok().flatten();
        Some(UsageEvent::new(
            request_id,
            key,
            self.now(),
            &self.method,
            self.path(),
            status,
            client_ip.as_deref(),
        ))
    }
}

/// Records `event` in the isolate's usage buffer and starts the flusher if none is running.
pub(crate) fn record_event(
    event: UsageEvent,
    settings: &Rc<Settings>,
    ctx: &Context,
    refused: bool,
) {
    // Refusals are bounded per key at the edge's default limit (see `usage`).
    let refusal_limit = refused.then_some(settings.decision.default_rate_limit);
    let at_ms = event.at.as_millis() as f64;
    usage::record(event, settings.usage.buffer_max, refusal_limit);
    if let Some(claim) = usage::claim_flush(at_ms) {
        let settings = settings.clone();
        in_background(ctx, async move { usage::flush(claim, &settings).await });
    }
}

/// Handles one request from the internet, `url` its URL as the runtime gives it (see the
/// module header for what it returns).
pub fn handle(request: web_sys::Request, url: String, env: Env, ctx: Context) -> Step {
    let incoming = Incoming::read(request, url);
    let settings = match settings::load(&env) {
        Ok(settings) => settings,
        Err(error) => {
            console_error!("{error}");
            return failure(500, "edge_misconfigured", &incoming.request_id_text);
        }
    };
    if let Some(refusal) = incoming.path_refusal(&settings, &ctx) {
        return refusal;
    }
    let freshness_ms = settings.replica_freshness_ms;
    if replica::freshness(incoming.now_ms, freshness_ms) != Freshness::Fresh {
        // Never loaded, or older than the bound: read what changed from the store first.
        return Step::Pending(future_to_promise(async move {
            replica::until_fresh(&env, freshness_ms).await;
            if replica::freshness(incoming.now_ms, freshness_ms) == Freshness::Unloaded {
                return settled(failure(503, "edge_unavailable", &incoming.request_id_text)).await;
            }
            settled(proceed(incoming, settings, env, ctx)).await
        }));
    }
    proceed(incoming, settings, env, ctx)
}

/// The decision on a fresh enough table, then the answer or the forward.
fn proceed(incoming: Incoming, settings: Rc<Settings>, env: Env, ctx: Context) -> Step {
    let now = incoming.now();
    // From half the freshness bound on, refresh ahead in the background, so a busy isolate's
    // requests seldom wait for the store.
    if let Some(claim) =
        replica::claim_refresh(incoming.now_ms, settings.replica_freshness_ms / 2.0)
    {
        replica::prune_limiter(now);
        let env = env.clone();
        in_background(&ctx, async move {
            if let Err(error) = replica::refresh_claimed(claim, &env).await {
                console_error!("refreshing the key table failed: {error}");
            }
        });
    }
    let facts = RequestFacts {
        x_api_key: incoming.x_api_key.as_deref(),
        authorization: incoming.authorization.as_deref(),
        method: &incoming.method,
        path: incoming.path(),
    };
    let count_here = settings.rate_limit_mode == RateLimitMode::Isolate;
    match decide::decide_request(&facts, now, &settings.decision, count_here) {
        Decided::Done(decision) => conclude(incoming, settings, ctx, decision),
        Decided::Uncounted(authorized) => Step::Pending(future_to_promise(async move {
            let decision = match limiter::check(&env, authorized.key_id, authorized.limit).await {
                Ok(outcome) => authorized.admit(outcome),
                Err(error) => {
                    console_error!(
                        "global rate limiter unreachable, counting in this isolate: {error}"
                    );
                    decide::count_locally(authorized, now)
                }
            };
            settled(conclude(incoming, settings, ctx, decision)).await
        })),
    }
}

/// Refuses, or prepares the forward.
fn conclude(incoming: Incoming, settings: Rc<Settings>, ctx: Context, decision: Decision) -> Step {
    let (key, identity, rate_limit) = match decision {
        Decision::Deny { denial, key } => {
            let answer = reply::denied(&denial, &incoming.request_id_text);
            return match answer {
                Ok(response) => {
                    incoming.record_usage(&settings, &ctx, key, response.status_code(), true);
                    Step::Answer(response.into())
                }
                Err(error) => {
                    console_error!("building a refusal failed: {error}");
                    failure(500, "edge_error", &incoming.request_id_text)
                }
            };
        }
        Decision::AllowPublic => (None, Vec::new(), Vec::new()),
        Decision::Allow(identity) => {
            let key = Some((identity.key_id, identity.org_id));
            let rate_limit = match settings.rate_limit_headers {
                RateLimitHeaders::Always => identity.rate_limit.headers(),
                RateLimitHeaders::On429 => Vec::new(),
            };
            (key, decide::identity_headers(identity), rate_limit)
        }
    };
    let (target, request_edits) = outgoing_request(&incoming, &settings, &identity);
    let mut answer = Edits::default();
    for (name, value) in &rate_limit {
        answer.set(name, value);
    }
    answer.set(REQUEST_ID_HEADER, &incoming.request_id_text);
    // The status is the origin's: the event waits for it (`forward`).
    let usage = incoming
        .usage_event(&settings, key, 0)
        .map(|event| (event, settings, ctx));
    match forward::prepare(&incoming.request, &target, &request_edits, &answer, usage) {
        Ok(forward) => Step::Forward(forward),
        Err(error) => {
            console_error!("building the origin request failed: {error:?}");
            failure(500, "edge_error", &incoming.request_id_text)
        }
    }
}

/// The request for the origin: its URL, `<origin><canonical path and query>` (the runtime's URL
/// parser leaves the canonical form as it is), and the edits to a copy of the incoming headers
/// (the runtime builds it with the incoming method, body stream and redirect mode, `manual` for
/// incoming requests; see `forward::prepare`): the caller's `x-keyplane-*` headers, the
/// consumed credential, the method overrides and `host` go, and the identity headers come in.
fn outgoing_request(
    incoming: &Incoming,
    settings: &Settings,
    identity: &[(&'static str, String)],
) -> (String, Edits) {
    let mut target =
        String::with_capacity(settings.origin_url.len() + incoming.path_and_query.len());
    target.push_str(&settings.origin_url);
    target.push_str(&incoming.path_and_query);
    let drop_authorization = headers::authorization_carries_a_key(
        incoming.authorization.as_deref(),
        &settings.decision.prefix,
    );
    // The outgoing headers start as a copy of the incoming ones: the same names.
    let mut edits = Edits::default();
    edits.delete_where(&headers::header_names(&incoming.headers), |name| {
        headers::is_dropped(name, drop_authorization)
    });
    for (name, value) in identity {
        edits.set(name, value);
    }
    edits.set(REQUEST_ID_HEADER, &incoming.request_id_text);
    (target, edits)
}

/// Awaits a [`Step`] to what the entry module takes: a `Response` or a `Forward` (the
/// asynchronous path's end; the entry module fetches a Forward either way).
async fn settled(step: Step) -> Result<JsValue, JsValue> {
    match step {
        Step::Pending(promise) => JsFuture::from(promise).await,
        step => Ok(step.into()),
    }
}

/// Runs `work` after the answer, under `waitUntil`. A runtime refusing it is logged: the
/// `worker` crate's own `Context::wait_until` unwraps that error, and a panic would abort the
/// instance.
pub(crate) fn in_background(ctx: &Context, work: impl Future<Output = ()> + 'static) {
    let promise = future_to_promise(async move {
        work.await;
        Ok(JsValue::UNDEFINED)
    });
    if let Err(error) = ctx.as_ref().wait_until(&promise) {
        console_error!("waitUntil refused background work: {error:?}");
    }
}

/// An edge failure answer.
fn failure(status: u16, code: &str, request_id: &str) -> Step {
    Step::Answer(match reply::failure(status, code, request_id) {
        Ok(response) => response.into(),
        Err(_) => web_sys::Response::error(),
    })
}

/// The canonical path and query of the incoming request's URL (`request.url`).
fn read_target(url: &str) -> CanonicalTarget<'_> {
    CanonicalTarget::parse(path_and_query(url))
}

/// Whether a path with `ambiguity` is refused under `mode`.
fn refuses(mode: PathNormalization, ambiguity: Option<Ambiguity>) -> bool {
    mode == PathNormalization::Strict && ambiguity.is_some()
}

/// The path and query of an absolute URL as the runtime gives it (`https://h/p?q` → `/p?q`,
/// raw: under bare workerd `request.url` keeps `%2e%2e`, `//`, `\` and control characters as
/// sent); the fragment, never sent by clients, is left out.
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

    /// What the edge decides on and forwards for a URL as the runtime reports it.
    fn forwarded(url: &str) -> (String, Option<Ambiguity>) {
        let target = read_target(url);
        (target.as_str().to_owned(), target.ambiguity())
    }

    #[test]
    fn the_forwarded_target_is_the_canonical_form_of_the_incoming_one() {
        assert_eq!(
            forwarded("http://127.0.0.1/v1//%2e%2e/contacts?x=1"),
            ("/v1/contacts?x=1".into(), Some(Ambiguity::EmptySegment))
        );
        assert_eq!(
            forwarded("http://h/v1/docs/private/%2E%2E/42#f"),
            ("/v1/docs/42".into(), Some(Ambiguity::EncodedDotSegment))
        );
        assert_eq!(
            forwarded("http://h/a\\b\u{1}c"),
            ("/a/b%01c".into(), Some(Ambiguity::ControlCharacter))
        );
        assert_eq!(
            forwarded("http://h/v1/contacts/7"),
            ("/v1/contacts/7".into(), None)
        );
    }

    #[test]
    fn only_strict_mode_refuses_and_only_ambiguous_paths() {
        let ambiguous = Some(Ambiguity::EncodedSeparator);
        assert!(refuses(PathNormalization::Strict, ambiguous));
        assert!(!refuses(PathNormalization::Resolve, ambiguous));
        assert!(!refuses(PathNormalization::Strict, None));
        assert!(!refuses(PathNormalization::Resolve, None));
    }
}
