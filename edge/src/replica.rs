//! The isolate's in-memory copy of the key table: what the request path reads.
//!
//! Filled from the [`store`](crate::store) Durable Object on an isolate's first request, then
//! refreshed from it in the background (`waitUntil`) when older than `REPLICA_REFRESH_MS`, and
//! at once when a push passes through this isolate. A refresh never moves the table backwards.
//! The decision itself is synchronous: the table is borrowed only while `shared` decides.

use std::cell::RefCell;

use keyplane_shared::decision::{Decision, Denial, EdgeConfig, RequestFacts, decide};
use keyplane_shared::table::codec::{decode_changes, decode_snapshot};
use keyplane_shared::{KeyTable, RateLimiter, Timestamp};
use worker::{Env, Method, Request, RequestInit, Result};

use crate::store::{self, BODY_KIND_HEADER};

#[derive(Default)]
struct Replica {
    table: KeyTable,
    loaded: bool,
    checked_at_ms: f64,
    refreshing: bool,
    limiter: RateLimiter,
}

thread_local! {
    static REPLICA: RefCell<Replica> = RefCell::new(Replica::default());
}

/// What the gate does with a request, owning everything it needs after the table is released.
pub enum Verdict {
    /// A public route: forward without identity.
    Public,
    /// Forward with these identity headers.
    Allow(Vec<(&'static str, String)>),
    /// Refuse.
    Deny(Denial),
}

/// Decides one request against the in-memory table.
pub fn decide_request(facts: &RequestFacts<'_>, now: Timestamp, config: &EdgeConfig) -> Verdict {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let Replica { table, limiter, .. } = &mut *replica;
        match decide(facts, now, config, table, limiter) {
            Decision::AllowPublic => Verdict::Public,
            Decision::Deny(denial) => Verdict::Deny(denial),
            Decision::Allow(identity) => Verdict::Allow(vec![
                ("x-keyplane-key-id", identity.key_id.to_string()),
                ("x-keyplane-org-id", identity.org_id.to_string()),
                ("x-keyplane-scopes", identity.scopes.to_string()),
                ("x-keyplane-env", identity.env.as_str().to_owned()),
            ]),
        }
    })
}

/// Whether the table was never loaded into this isolate.
pub fn is_loaded() -> bool {
    REPLICA.with(|replica| replica.borrow().loaded)
}

/// Claims the next background refresh if one is due (`interval_ms` since the last check and
/// none running).
pub fn claim_refresh(now_ms: f64, interval_ms: f64) -> bool {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let due =
            replica.loaded && !replica.refreshing && now_ms - replica.checked_at_ms >= interval_ms;
        if due {
            replica.refreshing = true;
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

/// Brings the isolate's table up to the store's.
pub async fn refresh(env: &Env) -> Result<()> {
    let outcome = refresh_inner(env).await;
    REPLICA.with(|replica| replica.borrow_mut().refreshing = false);
    outcome
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
