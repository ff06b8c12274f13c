//! A request on its way to the origin, and what the origin's answer gets.
//!
//! The gate decides synchronously and returns a `Forward` to the entry module
//! (`edge/js/shim.mjs`), a plain JS object made by `edge/js/headers.js` in one call
//! ([`prepare`]) from one newline-separated list: the origin's URL, the incoming headers to
//! drop, the identity headers to set, and the fields the answer gets (the rate-limit fields
//! and the request id), with, when usage is recorded, the handle of the request's usage event,
//! which waits here for the origin's status. The entry module fetches, relays the answer in JS
//! (`Forward.relay`: a new `Response` over the same body, the fields set) and reports the
//! status to [`forwarded`]; a failure goes to [`origin_unreachable`] or [`relay_failed`],
//! which answer 502 / 500 with the same fields. So an admitted request enters wasm once to be
//! decided and, with usage on, once more with two numbers; one string crosses out of wasm, and
//! no wasm-bindgen object (whose wrapper is registered with a `FinalizationRegistry`) is made.
//!
//! A usage event waits in this isolate until its request's answer comes (`waiting`). A request
//! the runtime cancels (the caller went away) never comes back, so its event would wait for
//! ever: when more than 4,096 wait, those older than 15 minutes are dropped (at most once a
//! minute), their usage unrecorded, and the number dropped is logged.

mod waiting;

use std::cell::RefCell;
use std::rc::Rc;

use keyplane_shared::usage::UsageEvent;
use worker::wasm_bindgen::{self, JsValue, prelude::wasm_bindgen};
use worker::{Context, console_error, console_log, web_sys};

use crate::decide::REQUEST_ID_HEADER;
use crate::gate;
use crate::headers::{self, Edits};
use crate::reply;
use crate::settings::Settings;
use waiting::Waiting;

/// The entry module's `Forward` for `incoming`, made in one JS call: the request for `target`
/// with `request_edits` applied to a copy of the incoming headers, and `answer` (the fields the
/// origin's answer gets). `usage` is the request's usage event (status still unknown) when
/// reporting is on: it waits here for the answer's status. Fails with the runtime's refusal to
/// build the request.
///
/// `target` is listed as it is: it never holds a newline, being the origin's URL in the URL
/// parser's serialization (`settings::base_url`) followed by a canonical path and query, where
/// a control character is percent-encoded (`keyplane_shared::path`).
pub fn prepare(
    incoming: &web_sys::Request,
    target: &str,
    request_edits: &Edits,
    answer: &Edits,
    usage: Option<(UsageEvent, Rc<Settings>, Context)>,
) -> Result<JsValue, JsValue> {
    debug_assert!(!target.contains('\n'), "an unlistable target: {target:?}");
    let mut plan = String::with_capacity(
        target.len()
            + 1
            + request_edits.deletes().len()
            + request_edits.sets().len()
            + answer.sets().len(),
    );
    plan.push_str(target);
    plan.push('\n');
    plan.push_str(request_edits.deletes());
    plan.push_str(request_edits.sets());
    plan.push_str(answer.sets());
    let handle = usage.map_or(0, |(event, settings, ctx)| hold(event, settings, ctx));
    headers::forward_step(
        incoming,
        &plan,
        request_edits.delete_count(),
        request_edits.set_count(),
        handle,
    )
    .inspect_err(|_| {
        // No forward, so no answer will report a status: the event goes (the caller answers
        // 500, as for any request the edge fails before the origin).
        release(handle);
    })
}

/// The entry module relayed the origin's answer with `status`: records the usage event
/// `usage` (from the `Forward`) with it.
#[wasm_bindgen]
pub fn forwarded(usage: u32, status: u16) {
    record(usage, status);
}

/// The entry module's fetch of a `Forward`'s request failed: 502 `origin_unavailable`, with the
/// fields the `Forward` lists for the answer (`sets`) and its usage event recorded.
#[wasm_bindgen]
pub fn origin_unreachable(usage: u32, sets: String, error: JsValue) -> web_sys::Response {
    console_error!("forwarding to the origin failed: {error:?}");
    failure(usage, &Edits::from_sets(sets), 502, "origin_unavailable")
}

/// The entry module's relay of the origin's answer failed: 500 `edge_error`, as above.
#[wasm_bindgen]
pub fn relay_failed(usage: u32, sets: String, error: JsValue) -> web_sys::Response {
    console_error!("relaying the origin's answer failed: {error:?}");
    failure(usage, &Edits::from_sets(sets), 500, "edge_error")
}

/// The edge's failure answer for an admitted request: it counted against the key's limit, so
/// it carries the rate-limit fields like any admitted answer.
fn failure(usage: u32, sets: &Edits, status: u16, code: &str) -> web_sys::Response {
    record(usage, status);
    let request_id = sets
        .value_of(REQUEST_ID_HEADER)
        .unwrap_or(keyplane_shared::ids::UNAVAILABLE_REQUEST_ID);
    let response: web_sys::Response = match reply::failure(status, code, request_id) {
        Ok(response) => response.into(),
        Err(_) => return web_sys::Response::error(),
    };
    if let Err(error) = sets.apply(&response.headers()) {
        console_error!("adding the rate-limit fields to a failure failed: {error:?}");
    }
    response
}

/// A usage event waiting for its request's status.
struct Pending {
    event: UsageEvent,
    settings: Rc<Settings>,
    ctx: Context,
}

thread_local! {
    static WAITING: RefCell<Waiting<Pending>> = RefCell::new(Waiting::default());
}

/// Keeps `event` until its status comes; returns its handle.
fn hold(event: UsageEvent, settings: Rc<Settings>, ctx: Context) -> u32 {
    let now_ms = event.at.as_millis() as f64;
    let pending = Pending {
        event,
        settings,
        ctx,
    };
    let (handle, dropped) = WAITING.with(|waiting| waiting.borrow_mut().hold(now_ms, pending));
    if dropped > 0 {
        console_log!(
            "usage: dropped {dropped} events of requests that never got an answer (cancelled) \
             after {} minutes",
            waiting::MAX_AGE_MS / 60_000.0
        );
    }
    handle
}

/// Drops the event `handle` waits with, unrecorded.
fn release(handle: u32) -> Option<Pending> {
    WAITING.with(|waiting| waiting.borrow_mut().take(handle))
}

/// Records the event `handle` waits with (if any) with `status`.
fn record(handle: u32, status: u16) {
    let Some(mut pending) = release(handle) else {
        return;
    };
    pending.event.status = status;
    gate::record_event(pending.event, &pending.settings, &pending.ctx, false);
}

/// How many usage events wait for their status (for tests and the status endpoint).
pub fn waiting() -> usize {
    WAITING.with(|waiting| waiting.borrow().count())
}
