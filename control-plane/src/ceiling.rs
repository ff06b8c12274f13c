//! The operator's ceiling on per-key rate limits (`keyplane serve --max-rate-limit`, env
//! `KEYPLANE_MAX_RATE_LIMIT`): no key's override may exceed it, in sustained rate or in burst.
//!
//! Written `<requests>/min,burst=<n>`, e.g. `1000/min,burst=100` (the default: ten times the
//! product's default limit of 100 requests a minute with bursts of 10). Create and update refuse
//! an override above it (400, naming the ceiling); a rotation's successor keeps the old key's
//! override, lowered to the ceiling where the operator has lowered the ceiling since.

use std::fmt;
use std::str::FromStr;

use keyplane_shared::RateLimit;

/// How many times the default limit the default ceiling is.
pub const DEFAULT_FACTOR: u32 = 10;

/// The highest rate limit a key may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitCeiling(RateLimit);

impl RateLimitCeiling {
    /// A ceiling at `limit`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimitCeiling(limit)
    }

    /// The ceiling as a limit.
    pub fn limit(self) -> RateLimit {
        self.0
    }

    /// Whether `limit` is within the ceiling (both its rate and its burst).
    pub fn admits(self, limit: RateLimit) -> bool {
        limit.requests_per_minute() <= self.0.requests_per_minute()
            && limit.burst() <= self.0.burst()
    }

    /// `limit`, lowered to the ceiling where it exceeds it.
    pub fn cap(self, limit: RateLimit) -> RateLimit {
        if self.admits(limit) {
            return limit;
        }
        RateLimit::new(
            limit
                .requests_per_minute()
                .min(self.0.requests_per_minute()),
            u32::from(limit.burst().min(self.0.burst())),
        )
        // Both parts are at least 1 and at most the ceiling's, which is a valid limit.
        .unwrap_or(self.0)
    }
}

impl Default for RateLimitCeiling {
    /// Ten times [`RateLimit::DEFAULT`]: 1,000 requests a minute, bursts of 100.
    fn default() -> Self {
        let default = RateLimit::DEFAULT;
        RateLimit::new(
            default.requests_per_minute() * DEFAULT_FACTOR,
            u32::from(default.burst()) * DEFAULT_FACTOR,
        )
        .map(RateLimitCeiling)
        // 1,000/min and 100 are within RateLimit's bounds.
        .unwrap_or(RateLimitCeiling(default))
    }
}

impl fmt::Display for RateLimitCeiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/min,burst={}",
            self.0.requests_per_minute(),
            self.0.burst()
        )
    }
}

impl FromStr for RateLimitCeiling {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let form = || {
            format!("expected `<requests>/min,burst=<n>` (e.g. `1000/min,burst=100`), got `{text}`")
        };
        let (rate, burst) = text.split_once(',').ok_or_else(form)?;
        let rate = rate.trim().strip_suffix("/min").ok_or_else(form)?;
        let burst = burst.trim().strip_prefix("burst=").ok_or_else(form)?;
        let rate: u32 = rate.trim().parse().map_err(|_| form())?;
        let burst: u32 = burst.trim().parse().map_err(|_| form())?;
        RateLimit::new(rate, burst)
            .map(RateLimitCeiling)
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, burst: u32) -> RateLimit {
        RateLimit::new(rate, burst).expect("valid")
    }

    #[test]
    fn the_default_ceiling_is_ten_times_the_default_limit_and_round_trips() {
        let ceiling = RateLimitCeiling::default();
        assert_eq!(ceiling.limit(), limit(1000, 100));
        assert_eq!(ceiling.to_string(), "1000/min,burst=100");
        assert_eq!(
            "1000/min,burst=100".parse::<RateLimitCeiling>(),
            Ok(ceiling)
        );
        assert_eq!(
            " 50/min , burst=5 ".parse::<RateLimitCeiling>(),
            Ok(RateLimitCeiling::new(limit(50, 5)))
        );
    }

    #[test]
    fn malformed_or_impossible_ceilings_are_refused() {
        for bad in [
            "",
            "1000",
            "1000/min",
            "1000/s,burst=100",
            "1000/min,100",
            "-1/min,burst=10",
            "0/min,burst=10",
            "1000/min,burst=0",
            "1000/min,burst=70000",
            "99999999999/min,burst=1",
        ] {
            assert!(bad.parse::<RateLimitCeiling>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_is_admitted_up_to_the_ceiling_and_capped_above_it() {
        let ceiling = RateLimitCeiling::new(limit(1000, 100));
        assert!(ceiling.admits(limit(1000, 100)));
        assert!(ceiling.admits(limit(1, 1)));
        assert!(!ceiling.admits(limit(1001, 100)));
        assert!(!ceiling.admits(limit(1000, 101)));
        assert_eq!(ceiling.cap(limit(10, 2)), limit(10, 2));
        assert_eq!(ceiling.cap(limit(5000, 20)), limit(1000, 20));
        assert_eq!(ceiling.cap(limit(20, 500)), limit(20, 100));
    }
}
