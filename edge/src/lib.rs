//! Keyplane's edge worker: the Cloudflare Worker that stands in front of a team's API and
//! checks every request's key against its replica of the key table.
//!
//! Layout:
//! - [`gate`]: the request path: decision from `keyplane_shared::decision`, then forward to the
//!   origin with the identity headers, or refuse (401 / 403 / 429) with the JSON error body.
//! - [`replica`]: the isolate's in-memory table, read synchronously by the decision.
//! - [`store`]: the Durable Object holding the durable table; pushes land there, it pulls the
//!   control plane's feed as a safety net, isolates copy from it.
//! - [`feed`]: the control plane's signed change feed, as the edge reads it.
//! - [`limiter`]: the global rate-limit mode's Durable Object (one counter per key).
//! - [`usage`]: usage events, buffered per isolate and shipped to the control plane.
//! - [`internal`]: `/__keyplane/` endpoints: health, signed push, signed status.
//! - [`settings`]: vars and secrets (documented in `wrangler.toml`); [`reply`]: answers.
//!
//! A panic aborts the whole Worker instance, so nothing on the request path may `unwrap`;
//! errors become 5xx JSON answers with a request id.

pub mod feed;
pub mod gate;
pub mod internal;
// `#[durable_object]` generates undocumented JS glue in this module too.
#[allow(missing_docs)]
pub mod limiter;
pub mod replica;
pub mod reply;
pub mod settings;
// `#[durable_object]` generates undocumented JS glue (constructor, fetch, alarm) in this module.
#[allow(missing_docs)]
pub mod store;
pub mod usage;

use worker::{Context, Env, Request, Result, console_error, event, web_sys};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let outcome = if req.path().starts_with(internal::PREFIX) {
        internal::handle(req, env).await.map(Into::into)
    } else {
        gate::handle(req, env, &ctx).await
    };
    outcome.or_else(|error| {
        console_error!("request failed: {error}");
        reply::failure(500, "edge_error", "req_unavailable").map(Into::into)
    })
}
