//! Keyplane's pure core, shared by the control plane (native) and the edge worker (wasm32).
//!
//! No I/O, no clock, no async runtime: time is an argument and randomness comes only from the OS
//! CSPRNG through `getrandom` when a key or id is generated.
//!
//! # Layout
//!
//! - [`key`]: the key format `<prefix>_<env>_<body>`: generation, strict parsing, truncated form.
//! - [`ids`]: public ids, `key_…` and `org_…`.
//! - [`digest`]: the lookup digest HMAC-SHA256(pepper, key) and versioned peppers.
//! - [`scope`]: scope grammar, matching and the subset rule.
//! - [`path`]: the canonical form of a request's path and query, as the forwarding reads it.
//! - [`policy`]: the route policy mapping (method, path) to required scopes.
//! - [`table`]: the replicated key table, its change log and its binary codecs.
//! - [`ratelimit`]: GCRA rate limiting with time passed in.
//! - [`sync`]: signing of replication requests between the control plane and edges.
//! - [`decision`]: the edge's allow / 401 / 403 / 429 verdict for one request.
//! - [`usage`]: usage events the edge records and ships to the control plane.
//! - [`time`]: the [`Timestamp`] type.

#![forbid(unsafe_code)]

mod base62;
pub mod decision;
pub mod digest;
pub mod ids;
pub mod key;
pub mod path;
pub mod policy;
pub mod ratelimit;
pub mod scope;
pub mod sync;
pub mod table;
pub mod time;
pub mod usage;

pub use decision::{
    AcceptedEnvironments, Authorization, Authorized, Decision, Denial, EdgeConfig, Identity,
    RequestFacts, authorize, decide,
};
pub use digest::{DigestPrefix, LookupDigest, Pepper, PepperId, PepperSet};
pub use ids::{HistoryId, KeyId, OrgId};
pub use key::{ApiKey, Environment, KeyParseError, KeyPrefix, KeyText};
pub use policy::{PolicySpec, RoutePolicy};
pub use ratelimit::{RateLimit, RateLimitOutcome, RateLimiter};
pub use scope::{Scope, ScopeSet};
pub use table::{Change, ChangeOp, FeedChain, KeyStatus, KeyTable, Lineage, TableEntry, TableRow};
pub use time::Timestamp;
