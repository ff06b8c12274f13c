//! The global rate-limit mode (`RATE_LIMIT_MODE = "global"`): one Durable Object per key,
//! named by the key id, counts every request of that key wherever it lands, with the same
//! GCRA as the isolate mode (`keyplane_shared::ratelimit`) and the object's own clock.
//!
//! Requests of one key are serialized through its object, so the count is exact across
//! isolates and locations. The counter is kept in the object's memory and written to its
//! storage on every check (the answer leaves once the write is durable), so an object evicted
//! while the key is still throttled resumes where it stopped instead of granting a fresh
//! burst. If the object cannot be reached, the gate falls back to the isolate's own limiter
//! for that request and logs it (fail to the per-isolate limit, never to "unlimited").
//!
//! Internal interface (through the binding only): `GET /check?rpm=<n>&burst=<n>` →
//! `{"allowed","remaining","reset_after_ms","retry_after_ms"}`.

use std::cell::Cell;

use keyplane_shared::ratelimit::GcraState;
use keyplane_shared::{KeyId, RateLimit, RateLimitOutcome, Timestamp};
use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Request, Response, Result, State, console_error, durable_object};

/// The binding's name in `wrangler.toml`.
pub const BINDING: &str = "KEYPLANE_RATE_LIMITER";
/// The storage key of the counter's state.
const STATE_KEY: &str = "gcra";

/// One key's counter.
#[durable_object]
pub struct RateLimitCounter {
    state: State,
    /// The counter, once read from storage.
    gcra: Cell<Option<GcraState>>,
}

/// The object's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Checked {
    allowed: bool,
    remaining: u32,
    reset_after_ms: u64,
    retry_after_ms: u64,
}

impl DurableObject for RateLimitCounter {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            gcra: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.url()?;
        let number = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.parse::<u32>().ok())
        };
        let limit = match (number("rpm"), number("burst")) {
            (Some(rpm), Some(burst)) => RateLimit::new(rpm, burst).ok(),
            _ => None,
        };
        let Some(limit) = limit else {
            return Response::error("rpm and burst must describe a valid limit", 400);
        };
        let mut gcra = match self.gcra.get() {
            Some(gcra) => gcra,
            None => self.stored().await?,
        };
        let now = Timestamp(worker::Date::now().as_millis() as i64);
        let outcome = limit.check(&mut gcra, now);
        self.gcra.set(Some(gcra));
        self.state
            .storage()
            .put(STATE_KEY, gcra.to_stored())
            .await?;
        Response::from_json(&Checked {
            allowed: outcome.allowed,
            remaining: outcome.remaining,
            reset_after_ms: outcome.reset_after_ms,
            retry_after_ms: outcome.retry_after_ms,
        })
    }
}

impl RateLimitCounter {
    /// The counter as storage holds it; fully refilled when nothing (readable) is stored.
    async fn stored(&self) -> Result<GcraState> {
        let stored: Option<String> = self.state.storage().get(STATE_KEY).await?;
        Ok(match stored.as_deref().map(GcraState::from_stored) {
            Some(Some(gcra)) => gcra,
            Some(None) => {
                console_error!("rate-limit counter: unreadable stored state, starting refilled");
                GcraState::default()
            }
            None => GcraState::default(),
        })
    }
}

/// Counts one request of `key` against `limit` in the key's object.
pub async fn check(env: &Env, key: KeyId, limit: RateLimit) -> Result<RateLimitOutcome> {
    let stub = env.durable_object(BINDING)?.get_by_name(&key.to_string())?;
    let url = format!(
        "https://limiter/check?rpm={}&burst={}",
        limit.requests_per_minute(),
        limit.burst()
    );
    let mut response = stub.fetch_with_str(&url).await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "rate-limit counter answered {}",
            response.status_code()
        )));
    }
    let checked: Checked = response.json().await?;
    Ok(RateLimitOutcome {
        allowed: checked.allowed,
        limit,
        remaining: checked.remaining,
        reset_after_ms: checked.reset_after_ms,
        retry_after_ms: checked.retry_after_ms,
    })
}
