//! The decision on the request path, and what an allowed request carries to the origin.
//!
//! The edge decides with `keyplane_shared::decision`, the same calls its tests and the
//! `decide_1m` benchmark make: [`decide`] on the isolate's copy of the table when the rate limit
//! is counted in the isolate, or [`authorize`] now and [`Authorized::admit`] once the global
//! limiter (a Durable Object) has answered. The identity of an allowed key reaches the origin
//! as the headers named here.

use keyplane_shared::Timestamp;
use keyplane_shared::decision::{
    Authorization, Authorized, Decision, EdgeConfig, Identity, RequestFacts, authorize, decide,
};

use crate::replica;

/// The allowed key's id (`key_…`).
pub const KEY_ID_HEADER: &str = "x-keyplane-key-id";
/// Its organization's id (`org_…`).
pub const ORG_ID_HEADER: &str = "x-keyplane-org-id";
/// Its scopes, space-separated.
pub const SCOPES_HEADER: &str = "x-keyplane-scopes";
/// Its environment (`live` or `test`).
pub const ENV_HEADER: &str = "x-keyplane-env";
/// The request's id, on every forwarded request.
pub const REQUEST_ID_HEADER: &str = "x-keyplane-request-id";

/// What [`decide_request`] settled.
pub enum Decided {
    /// The decision, rate limit included.
    Done(Decision),
    /// Everything but the rate limit passed; the caller counts it elsewhere (global mode) and
    /// finishes with [`Authorized::admit`].
    Uncounted(Authorized),
}

/// Decides one request against the isolate's copy of the table; counts it in the isolate's
/// limiter when `count_here`.
pub fn decide_request(
    facts: &RequestFacts<'_>,
    now: Timestamp,
    config: &EdgeConfig,
    count_here: bool,
) -> Decided {
    replica::with_table(|table, limiter| {
        if count_here {
            return Decided::Done(decide(facts, now, config, table, limiter));
        }
        match authorize(facts, now, config, table) {
            Authorization::Public => Decided::Done(Decision::AllowPublic),
            Authorization::Denied { denial, key } => Decided::Done(Decision::Deny { denial, key }),
            Authorization::Authorized(authorized) => Decided::Uncounted(authorized),
        }
    })
}

/// Counts `authorized` in the isolate's limiter (the global mode's fallback) and finishes the
/// decision.
pub fn count_locally(authorized: Authorized, now: Timestamp) -> Decision {
    let outcome =
        replica::with_table(|_, limiter| limiter.check(authorized.key_id, authorized.limit, now));
    authorized.admit(outcome)
}

/// The identity headers of an allowed request.
pub fn identity_headers(identity: Identity) -> Vec<(&'static str, String)> {
    vec![
        (KEY_ID_HEADER, identity.key_id.to_string()),
        (ORG_ID_HEADER, identity.org_id.to_string()),
        (SCOPES_HEADER, identity.scopes),
        (ENV_HEADER, identity.env.as_str().to_owned()),
    ]
}
