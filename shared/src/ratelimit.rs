//! Per-key rate limiting with GCRA (the generic cell rate algorithm), time passed in.
//!
//! A limit is a sustained rate (requests per minute) plus a burst: a key that has been idle may
//! send `burst` requests at once, then one every `60 s / requests_per_minute`. The state per key is
//! one number, the theoretical arrival time (TAT), so it is cheap to keep per isolate or in a
//! Durable Object. Default: 100 requests/minute with bursts of 10.
//!
//! Over any window of `w` seconds, a key is admitted at most `burst + w × rate` requests; so from
//! idle, at most 10 + 1 in the first 0.6 s and 110 in the first minute with the defaults, and 100
//! per minute sustained.

use std::collections::HashMap;
use std::num::{NonZeroU16, NonZeroU32};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::KeyId;
use crate::time::Timestamp;

const NANOS_PER_MINUTE: u64 = 60_000_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
/// Highest accepted sustained rate (100,000 requests per second).
pub const MAX_REQUESTS_PER_MINUTE: u32 = 6_000_000;

/// A sustained rate plus a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitSpec", into = "RateLimitSpec")]
pub struct RateLimit {
    requests_per_minute: NonZeroU32,
    burst: NonZeroU16,
}

/// The written form of a [`RateLimit`] (API and configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Sustained requests per minute.
    pub requests_per_minute: u32,
    /// Requests allowed at once after idling.
    pub burst: u32,
}

/// Why a rate limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// `requests_per_minute` outside 1..=[`MAX_REQUESTS_PER_MINUTE`].
    #[error("requests_per_minute must be between 1 and {MAX_REQUESTS_PER_MINUTE}, got {0}")]
    Rate(u32),
    /// `burst` outside 1..=65535.
    #[error("burst must be between 1 and 65535, got {0}")]
    Burst(u32),
}

impl RateLimit {
    /// The product default: 100 requests per minute, bursts of 10.
    pub const DEFAULT: RateLimit = RateLimit {
        requests_per_minute: NonZeroU32::new(100).expect("100 is not zero"),
        burst: NonZeroU16::new(10).expect("10 is not zero"),
    };

    /// A validated limit.
    pub fn new(requests_per_minute: u32, burst: u32) -> Result<Self, RateLimitError> {
        let rate = NonZeroU32::new(requests_per_minute)
            .filter(|r| r.get() <= MAX_REQUESTS_PER_MINUTE)
            .ok_or(RateLimitError::Rate(requests_per_minute))?;
        let burst = u16::try_from(burst)
            .ok()
            .and_then(NonZeroU16::new)
            .ok_or(RateLimitError::Burst(burst))?;
        Ok(RateLimit {
            requests_per_minute: rate,
            burst,
        })
    }

    /// Sustained requests per minute.
    pub const fn requests_per_minute(self) -> u32 {
        self.requests_per_minute.get()
    }

    /// Burst size.
    pub const fn burst(self) -> u16 {
        self.burst.get()
    }

    /// Time between requests at the sustained rate, in nanoseconds.
    const fn interval_nanos(self) -> u64 {
        NANOS_PER_MINUTE / self.requests_per_minute.get() as u64
    }

    /// Checks one request against this limit, updating `state` only if it is admitted.
    ///
    /// Time is kept in `u128` nanoseconds, so every representable `now` is exact: nothing
    /// saturates or wraps, whatever the clock says.
    pub fn check(self, state: &mut GcraState, now: Timestamp) -> RateLimitOutcome {
        let now_ns = nanos_since_epoch(now);
        let interval = u128::from(self.interval_nanos());
        let capacity = interval * u128::from(self.burst());
        let tat = state.tat_nanos.max(now_ns);
        let new_tat = tat + interval;
        let allow_at = new_tat.saturating_sub(capacity);
        if now_ns < allow_at {
            return RateLimitOutcome {
                allowed: false,
                limit: self,
                remaining: 0,
                reset_after_ms: ceil_millis(tat - now_ns),
                retry_after_ms: ceil_millis(allow_at - now_ns),
            };
        }
        state.tat_nanos = new_tat;
        // Admitted means new_tat - capacity <= now, so this cannot underflow.
        let remaining = (now_ns + capacity - new_tat) / interval;
        RateLimitOutcome {
            allowed: true,
            limit: self,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_after_ms: ceil_millis(new_tat - now_ns),
            retry_after_ms: 0,
        }
    }
}

/// `now` in nanoseconds since the epoch; times before it count as the epoch.
fn nanos_since_epoch(now: Timestamp) -> u128 {
    u128::try_from(now.as_millis()).unwrap_or(0) * u128::from(NANOS_PER_MILLI)
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::DEFAULT
    }
}

impl TryFrom<RateLimitSpec> for RateLimit {
    type Error = RateLimitError;
    fn try_from(spec: RateLimitSpec) -> Result<Self, Self::Error> {
        RateLimit::new(spec.requests_per_minute, spec.burst)
    }
}

impl From<RateLimit> for RateLimitSpec {
    fn from(limit: RateLimit) -> Self {
        RateLimitSpec {
            requests_per_minute: limit.requests_per_minute(),
            burst: u32::from(limit.burst()),
        }
    }
}

fn ceil_millis(nanos: u128) -> u64 {
    u64::try_from(nanos.div_ceil(u128::from(NANOS_PER_MILLI))).unwrap_or(u64::MAX)
}

/// The policy name the rate-limit header fields use.
pub const POLICY_NAME: &str = "key";

/// One key's limiter state: its theoretical arrival time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    tat_nanos: u128,
}

impl GcraState {
    /// Whether this state is indistinguishable from a fresh one at `now` (the key is fully refilled).
    pub fn is_idle(&self, now: Timestamp) -> bool {
        self.tat_nanos <= nanos_since_epoch(now)
    }

    /// When this state is idle again (from then on [`GcraState::is_idle`] holds), in
    /// nanoseconds since the epoch: the later, the more the key is held back. A bounded map of
    /// states that must drop some keeps the latest.
    pub fn idle_from_nanos(&self) -> u128 {
        self.tat_nanos
    }

    /// The state as text, for a counter that must outlive its process (the edge's global
    /// mode keeps it in Durable Object storage): the theoretical arrival time in ns.
    pub fn to_stored(&self) -> String {
        self.tat_nanos.to_string()
    }

    /// The state [`GcraState::to_stored`] wrote; `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let tat_nanos = stored.parse().ok()?;
        Some(Self { tat_nanos })
    }
}

/// The result of one check, with what the rate-limit response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitOutcome {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The limit that was applied.
    pub limit: RateLimit,
    /// Requests that could be sent right now after this one.
    pub remaining: u32,
    /// Milliseconds until the full burst is available again.
    pub reset_after_ms: u64,
    /// Milliseconds until the next request would be admitted (0 when admitted).
    pub retry_after_ms: u64,
}

impl RateLimitOutcome {
    /// `Retry-After` in whole seconds, rounded up (at least 1 when denied).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000)
    }

    /// Seconds until the full burst is back, rounded up.
    pub fn reset_after_secs(&self) -> u64 {
        self.reset_after_ms.div_ceil(1000)
    }

    /// Seconds a client should wait before its quota grows: until the next request is
    /// admitted when refused, until the full burst is back when admitted.
    pub fn reset_secs(&self) -> u64 {
        if self.allowed {
            self.reset_after_secs()
        } else {
            self.retry_after_secs()
        }
    }

    /// The response header fields describing this outcome, for admitted and refused requests:
    ///
    /// - `RateLimit-Policy: "key";q=<requests per minute>;w=60` and
    ///   `RateLimit: "key";r=<remaining>;t=<reset>` (draft-ietf-httpapi-ratelimit-headers);
    /// - the legacy `X-RateLimit-Limit` (requests per minute), `X-RateLimit-Remaining`,
    ///   `X-RateLimit-Reset` (seconds, same as `t`);
    /// - `Retry-After` (seconds) when refused.
    ///
    /// `remaining` is what may be sent right now (at most the burst), `t` is
    /// [`reset_secs`](Self::reset_secs).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let rate = self.limit.requests_per_minute();
        let (remaining, reset) = (self.remaining, self.reset_secs());
        let mut headers = vec![
            (
                "ratelimit-policy",
                format!("\"{POLICY_NAME}\";q={rate};w=60"),
            ),
            (
                "ratelimit",
                format!("\"{POLICY_NAME}\";r={remaining};t={reset}"),
            ),
            ("x-ratelimit-limit", rate.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        if !self.allowed {
            headers.push(("retry-after", self.retry_after_secs().to_string()));
        }
        headers
    }
}

/// Limiter state for many keys, as one edge isolate keeps it.
#[derive(Debug, Default)]
pub struct RateLimiter {
    states: HashMap<KeyId, GcraState>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        RateLimiter::default()
    }

    /// Checks one request of `key` against `limit`.
    pub fn check(&mut self, key: KeyId, limit: RateLimit, now: Timestamp) -> RateLimitOutcome {
        limit.check(self.states.entry(key).or_default(), now)
    }

    /// Forgets keys that are fully refilled at `now`; their next check behaves the same.
    pub fn prune(&mut self, now: Timestamp) {
        self.states.retain(|_, state| !state.is_idle(now));
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    #[test]
    fn a_stored_state_resumes_where_it_stopped() {
        let limit = RateLimit::new(6, 10).expect("valid");
        let mut state = GcraState::default();
        assert_eq!(admitted(limit, &mut state, T0, 12), 10);
        let mut resumed = GcraState::from_stored(&state.to_stored()).expect("round trip");
        assert_eq!(resumed, state);
        // 5 s later the key is still empty: a fresh state would admit a whole burst.
        let later = Timestamp(T0.0 + 5_000);
        assert!(!limit.check(&mut resumed, later).allowed);
        for junk in ["", "-1", "12a", "340282366920938463463374607431768211456"] {
            assert_eq!(GcraState::from_stored(junk), None, "{junk:?}");
        }
    }

    fn admitted(limit: RateLimit, state: &mut GcraState, now: Timestamp, n: usize) -> usize {
        (0..n).filter(|_| limit.check(state, now).allowed).count()
    }

    #[test]
    fn default_is_100_per_minute_with_bursts_of_10() {
        let limit = RateLimit::default();
        assert_eq!((limit.requests_per_minute(), limit.burst()), (100, 10));
    }

    #[test]
    fn a_burst_of_ten_is_admitted_and_the_eleventh_is_refused() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        for expected_remaining in (0..10).rev() {
            let outcome = limit.check(&mut state, T0);
            assert!(outcome.allowed);
            assert_eq!(outcome.remaining, expected_remaining);
        }
        let refused = limit.check(&mut state, T0);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_ms, 600, "one interval at 100/min");
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.reset_after_ms, 6_000, "ten intervals to refill");
    }

    #[test]
    fn refusals_do_not_consume_capacity() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        assert_eq!(admitted(limit, &mut state, T0, 50), 10);
        // One interval later exactly one more is admitted, however many were refused before.
        assert_eq!(admitted(limit, &mut state, T0.plus_millis(600), 5), 1);
    }

    #[test]
    fn capacity_refills_at_the_sustained_rate() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        assert_eq!(admitted(limit, &mut state, T0, 10), 10);
        assert_eq!(
            admitted(limit, &mut state, T0.plus_millis(599), 1),
            0,
            "just before the interval"
        );
        assert_eq!(
            admitted(limit, &mut state, T0.plus_millis(600), 1),
            1,
            "exactly at the interval"
        );
        assert_eq!(
            admitted(limit, &mut state, T0.plus_millis(600 + 6_000), 20),
            10,
            "fully refilled"
        );
    }

    #[test]
    fn sustained_load_is_held_to_the_rate_over_a_minute() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        // A request every 10 ms for 60 s: 6,000 attempts.
        let total = (0..6_000)
            .filter(|i| limit.check(&mut state, T0.plus_millis(i * 10)).allowed)
            .count();
        // Burst of 10 plus one per 600 ms over 59.99 s (the first at t = 0 is part of the burst).
        assert_eq!(total, 10 + 99);
    }

    #[test]
    fn overrides_change_rate_and_burst() {
        let limit = RateLimit::new(6_000, 3).expect("valid");
        let mut state = GcraState::default();
        assert_eq!(admitted(limit, &mut state, T0, 10), 3);
        let outcome = limit.check(&mut state, T0);
        assert_eq!(outcome.retry_after_ms, 10);
        assert_eq!(admitted(limit, &mut state, T0.plus_millis(10), 10), 1);
    }

    #[test]
    fn invalid_limits_are_refused() {
        assert_eq!(RateLimit::new(0, 1), Err(RateLimitError::Rate(0)));
        assert_eq!(
            RateLimit::new(MAX_REQUESTS_PER_MINUTE + 1, 1),
            Err(RateLimitError::Rate(MAX_REQUESTS_PER_MINUTE + 1))
        );
        assert_eq!(RateLimit::new(100, 0), Err(RateLimitError::Burst(0)));
        assert_eq!(
            RateLimit::new(100, 70_000),
            Err(RateLimitError::Burst(70_000))
        );
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests_per_minute": 0, "burst": 1}"#).is_err()
        );
        let parsed: RateLimit =
            serde_json::from_str(r#"{"requests_per_minute": 60, "burst": 5}"#).expect("valid");
        assert_eq!(parsed, RateLimit::new(60, 5).expect("valid"));
    }

    #[test]
    fn the_end_of_time_neither_panics_nor_admits_more_than_the_burst() {
        let limit = RateLimit::default();
        for now in [
            Timestamp(i64::MAX),
            Timestamp(i64::MAX / 1_000_000),
            Timestamp(i64::MIN),
        ] {
            let mut state = GcraState::default();
            assert_eq!(admitted(limit, &mut state, now, 50), 10, "{now:?}");
            let refused = limit.check(&mut state, now);
            assert!(!refused.allowed && refused.retry_after_ms > 0, "{now:?}");
        }
    }

    #[test]
    fn time_going_backwards_never_admits_more() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        assert_eq!(admitted(limit, &mut state, T0, 10), 10);
        assert_eq!(admitted(limit, &mut state, T0.plus_millis(-60_000), 10), 0);
    }

    #[test]
    fn limiter_keeps_keys_apart_and_prunes_idle_ones() {
        let mut limiter = RateLimiter::new();
        let (a, b) = (KeyId::from_bytes([1; 16]), KeyId::from_bytes([2; 16]));
        let limit = RateLimit::default();
        for _ in 0..10 {
            assert!(limiter.check(a, limit, T0).allowed);
        }
        assert!(!limiter.check(a, limit, T0).allowed);
        assert!(limiter.check(b, limit, T0).allowed);
        limiter.prune(T0.plus_millis(5_999));
        assert_eq!(
            limiter.len(),
            1,
            "b is refilled and forgotten, a is not yet refilled"
        );
        limiter.prune(T0.plus_millis(6_000));
        assert!(limiter.is_empty());
    }
    #[test]
    fn header_fields_describe_admitted_and_refused_requests() {
        let limit = RateLimit::default();
        let mut state = GcraState::default();
        let first = limit.check(&mut state, T0);
        assert_eq!(
            first.headers(),
            vec![
                ("ratelimit-policy", "\"key\";q=100;w=60".to_owned()),
                ("ratelimit", "\"key\";r=9;t=1".to_owned()),
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-remaining", "9".to_owned()),
                ("x-ratelimit-reset", "1".to_owned()),
            ],
            "one interval (600 ms) to refill what the first request used"
        );
        for _ in 0..9 {
            limit.check(&mut state, T0);
        }
        let refused = limit.check(&mut state, T0.plus_millis(100));
        let headers = refused.headers();
        let field = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("ratelimit"), Some("\"key\";r=0;t=1"));
        assert_eq!(field("retry-after"), Some("1"), "500 ms rounds up");
        assert_eq!(field("x-ratelimit-remaining"), Some("0"));
        let slow = RateLimit::new(1, 1).expect("valid");
        let mut state = GcraState::default();
        slow.check(&mut state, T0);
        let refused = slow.check(&mut state, T0.plus_millis(1_500));
        assert_eq!(refused.retry_after_secs(), 59);
        assert!(
            refused
                .headers()
                .contains(&("retry-after", "59".to_owned()))
        );
        assert!(
            refused
                .headers()
                .contains(&("ratelimit-policy", "\"key\";q=1;w=60".to_owned()))
        );
    }
}
