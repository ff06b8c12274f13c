//! Keyplane's edge worker: the Cloudflare Worker that stands in front of a team's API and
//! checks every request's key against its replica of the key table.
//!
//! Layout:
//! - [`gate`]: the request path: the decision ([`decide`], with `keyplane_shared::decision`),
//!   then forward to the origin with the identity headers, or refuse (401 / 403 / 429) with the
//!   JSON error body.
//! - [`headers`]: the header edits of the request path, applied in one JS call each.
//! - [`forward`]: a request on its way to the origin, as the entry module gets it, and what
//!   its answer gets (fields, usage event).
//! - [`replica`]: the isolate's in-memory table, read synchronously by the decision.
//! - [`store`]: the Durable Object holding the durable table; pushes land there, it pulls the
//!   control plane's feed as a safety net, isolates copy from it.
//! - [`feed`]: the control plane's signed change feed, as the edge reads it.
//! - [`limiter`]: the global rate-limit mode's Durable Object (one counter per key).
//! - [`usage`]: usage events, buffered per isolate and shipped to the control plane.
//! - [`internal`]: `/__keyplane/` endpoints: health, signed push, signed status.
//! - [`claim`]: one background task at a time (the refresh ahead, the usage flusher).
//! - [`entropy`]: the pool of CSPRNG output request ids are drawn from.
//! - [`settings`]: vars and secrets (documented in `wrangler.toml`); [`reply`]: answers.
//!
//! A panic aborts the whole Worker instance, so nothing on the request path may `unwrap`;
//! errors become 5xx JSON answers with a request id.

pub mod claim;
pub mod decide;
pub mod entropy;
pub mod feed;
pub mod forward;
pub mod gate;
pub mod headers;
pub mod internal;
// `#[durable_object]` generates undocumented JS glue in this module too.
#[allow(missing_docs)]
pub mod limiter;
pub mod pieces;
pub mod replica;
pub mod reply;
pub mod settings;
// `#[durable_object]` generates undocumented JS glue (constructor, fetch, alarm) in this module.
#[allow(missing_docs)]
pub mod store;
pub mod usage;

use worker::wasm_bindgen::{self, JsValue, prelude::wasm_bindgen};
use worker::{Context, Env, Request, Url, console_error, web_sys};

/// The time in unix seconds, as replication signatures carry it.
pub(crate) fn unix_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

/// The first value of query parameter `name`, decoded.
pub(crate) fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The worker's fetch handler, called by the entry module (`edge/js/shim.mjs`) for every
/// request. Internal paths take the asynchronous `/__keyplane/` handler (a `Promise` of the
/// `Response`); every other request goes through the [`gate`], which answers synchronously
/// when it can (see there for what the entry module gets back).
#[wasm_bindgen]
pub fn fetch(request: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let ctx = Context::new(ctx);
    let url = request.url();
    // The path starts at the first `/` after the scheme's `://` (a byte search: this runs
    // on every request).
    let internal_path = url
        .find(':')
        .and_then(|colon| url.get(colon + 3..))
        .and_then(|rest| {
            rest.find('/')
                .map(|at| rest[at..].starts_with(internal::PREFIX))
        })
        .unwrap_or(false);
    if !internal_path {
        return gate::handle(request, url, env, ctx).into();
    }
    worker::js_sys::futures::future_to_promise(async move {
        let response = match internal::handle(Request::from(request), env).await {
            Ok(response) => response,
            Err(error) => {
                console_error!("request failed: {error}");
                reply::failure(
                    500,
                    "edge_error",
                    keyplane_shared::ids::UNAVAILABLE_REQUEST_ID,
                )
                .map_err(|error| JsValue::from_str(&error.to_string()))?
            }
        };
        Ok(web_sys::Response::from(response).into())
    })
    .into()
}
