//! The isolate's in-memory copy of the key table: what the request path reads.
//!
//! Filled from the [`store`](crate::store) Durable Object on an isolate's first request, then
//! refreshed from it in the background (`waitUntil`) when older than `REPLICA_REFRESH_MS`, and
//! at once when a push passes through this isolate. A refresh never moves the table backwards.
//! The decision itself is synchronous: the table is borrowed only while `shared` decides.

use std::cell::RefCell;

use keyplane_shared::decision::{Authorization, Denial, EdgeConfig, RequestFacts, authorize};
use keyplane_shared::table::codec::{decode_changes, decode_snapshot};
use keyplane_shared::{
    KeyId, KeyTable, OrgId, RateLimit, RateLimitOutcome, RateLimiter, Timestamp,
};
use worker::{Env, Method, Request, RequestInit, Result};

use crate::store::{self, BODY_KIND_HEADER};

#[derive(Default)]
struct Replica {
    table: KeyTable,
    loaded: bool,
    checked_at_ms: f64,
    /// When the running background refresh was claimed.
    refreshing_since: Option<f64>,
    limiter: RateLimiter,
}

thread_local! {
    static REPLICA: RefCell<Replica> = RefCell::new(Replica::default());
}

/// A key that passed every check but the rate limit, owned (the table is released).
pub struct Admitted {
    /// The key and its organization.
    pub key: (KeyId, OrgId),
    /// The identity headers for the origin.
    pub identity: Vec<(&'static str, String)>,
    /// The limit that applies to it.
    pub limit: RateLimit,
}

/// What the gate does with a request, owning everything it needs after the table is released.
pub enum Verdict {
    /// A public route: forward without identity.
    Public,
    /// Refuse; `key` names the key when the presented string was found in the table.
    Deny {
        /// Why.
        denial: Denial,
        /// The key, for the usage record.
        key: Option<(KeyId, OrgId)>,
    },
    /// Forward; the rate limiter admitted it with this outcome.
    Allow(Admitted, RateLimitOutcome),
}

/// What [`decide_request`] settled.
pub enum Decided {
    /// The verdict, rate limit included.
    Done(Verdict),
    /// Everything but the rate limit passed; the caller counts it elsewhere (global mode)
    /// and finishes with [`settle`].
    Uncounted(Admitted),
}

/// Decides one request against the in-memory table; counts it in the isolate's limiter when
/// `count_here`.
pub fn decide_request(
    facts: &RequestFacts<'_>,
    now: Timestamp,
    config: &EdgeConfig,
    count_here: bool,
) -> Decided {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let Replica { table, limiter, .. } = &mut *replica;
        let authorized = match authorize(facts, now, config, table) {
            Authorization::Public => return Decided::Done(Verdict::Public),
            Authorization::Denied { denial, key } => {
                return Decided::Done(Verdict::Deny { denial, key });
            }
            Authorization::Authorized(authorized) => authorized,
        };
        let admitted = Admitted {
            key: (authorized.key_id, authorized.org_id),
            identity: vec![
                ("x-keyplane-key-id", authorized.key_id.to_string()),
                ("x-keyplane-org-id", authorized.org_id.to_string()),
                ("x-keyplane-scopes", authorized.scopes.to_string()),
                ("x-keyplane-env", authorized.env.as_str().to_owned()),
            ],
            limit: authorized.limit,
        };
        if !count_here {
            return Decided::Uncounted(admitted);
        }
        let outcome = limiter.check(authorized.key_id, authorized.limit, now);
        Decided::Done(settle(admitted, outcome))
    })
}

/// Counts `admitted` in the isolate's limiter (the global mode's fallback).
pub fn count_locally(admitted: Admitted, now: Timestamp) -> Verdict {
    let outcome = REPLICA.with(|replica| {
        replica
            .borrow_mut()
            .limiter
            .check(admitted.key.0, admitted.limit, now)
    });
    settle(admitted, outcome)
}

/// The verdict once the rate limiter answered.
pub fn settle(admitted: Admitted, outcome: RateLimitOutcome) -> Verdict {
    if outcome.allowed {
        Verdict::Allow(admitted, outcome)
    } else {
        Verdict::Deny {
            denial: Denial::RateLimited(outcome),
            key: Some(admitted.key),
        }
    }
}

/// Forgets limiter state of keys that are fully refilled (keeps the map small).
pub fn prune_limiter(now: Timestamp) {
    REPLICA.with(|replica| replica.borrow_mut().limiter.prune(now));
}

/// Whether the table was never loaded into this isolate.
pub fn is_loaded() -> bool {
    REPLICA.with(|replica| replica.borrow().loaded)
}

/// A refresh claimed longer ago than this was cancelled by the runtime without being dropped
/// (its future is never polled again): another may start.
const STALE_REFRESH_MS: f64 = 60_000.0;

/// Claims the next background refresh if one is due (`interval_ms` since the last check and
/// none running, or the running one's claim is stale).
pub fn claim_refresh(now_ms: f64, interval_ms: f64) -> bool {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let free = replica
            .refreshing_since
            .is_none_or(|since| now_ms - since >= STALE_REFRESH_MS);
        let due = replica.loaded && free && now_ms - replica.checked_at_ms >= interval_ms;
        if due {
            replica.refreshing_since = Some(now_ms);
        }
        due
    })
}

/// The applied sequence and key count, for the status endpoint.
pub fn status() -> (u64, usize) {
    REPLICA.with(|replica| {
        let replica = replica.borrow();
        (replica.table.applied_seq(), replica.table.len())
    })
}

/// Releases the refresh claim even when the refresh future is dropped half-way (the runtime
/// cancels `waitUntil` work that outlives its limit).
struct RefreshClaim;

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        REPLICA.with(|replica| replica.borrow_mut().refreshing_since = None);
    }
}

/// Brings the isolate's table up to the store's.
pub async fn refresh(env: &Env) -> Result<()> {
    let _claim = RefreshClaim;
    refresh_inner(env).await
}

async fn refresh_inner(env: &Env) -> Result<()> {
    let after = REPLICA.with(|replica| {
        let replica = replica.borrow();
        if replica.loaded {
            replica.table.applied_seq()
        } else {
            0
        }
    });
    let stub = env
        .durable_object(store::BINDING)?
        .get_by_name(store::STORE_NAME)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let request = Request::new_with_init(&format!("https://store/table?after={after}"), &init)?;
    let mut response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "key table store answered {}",
            response.status_code()
        )));
    }
    let kind = response
        .headers()
        .get(BODY_KIND_HEADER)?
        .unwrap_or_default();
    let body = response.bytes().await?;
    let corrupt = |error: keyplane_shared::table::codec::CodecError| {
        worker::Error::RustError(format!(
            "key table store sent an undecodable {kind}: {error}"
        ))
    };
    let now = worker::Date::now().as_millis() as f64;
    if kind == "snapshot" {
        let snapshot = decode_snapshot(&body).map_err(corrupt)?;
        REPLICA.with(|replica| {
            let mut replica = replica.borrow_mut();
            if !replica.loaded || snapshot.applied_seq() >= replica.table.applied_seq() {
                replica.table = snapshot;
            }
            replica.loaded = true;
            replica.checked_at_ms = now;
        });
    } else {
        let changes = decode_changes(&body).map_err(corrupt)?;
        REPLICA.with(|replica| {
            let mut replica = replica.borrow_mut();
            // A gap (a concurrent refresh raced this one) leaves the rest for the next refresh.
            let _ = replica.table.apply_all(&changes);
            replica.loaded = true;
            replica.checked_at_ms = now;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refresh_at_a_time_unless_the_running_one_is_stale() {
        assert!(!claim_refresh(5_000.0, 1_000.0), "nothing loaded yet");
        REPLICA.with(|replica| replica.borrow_mut().loaded = true);
        assert!(claim_refresh(5_000.0, 1_000.0));
        assert!(!claim_refresh(6_000.0, 1_000.0), "one is running");
        assert!(
            claim_refresh(5_000.0 + STALE_REFRESH_MS, 1_000.0),
            "a claim the runtime abandoned gives way"
        );
        drop(RefreshClaim);
        assert!(claim_refresh(5_000.0 + STALE_REFRESH_MS, 1_000.0));
    }
}
