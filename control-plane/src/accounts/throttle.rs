//! Login throttling, with the `shared` rate limiter (GCRA): per submitted email (whether or not
//! an account has it, so the answer says nothing about which exist) and per client address.
//! Every attempt counts, successful or not. The state is this process's memory: several control
//! planes each throttle on their own.
//!
//! An IPv6 client is counted by its /64 network (`address_key`): one subscriber commonly
//! holds a whole /64, and would otherwise take a fresh allowance per address. Each map is
//! bounded; when it is full of keys still held back, it forgets those nearest a fresh
//! allowance, at least half (`make_room`), so flooding it with new emails or addresses cannot
//! reset the keys an attack is held back on.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use keyplane_shared::ratelimit::GcraState;
use keyplane_shared::{RateLimit, Timestamp};

use crate::ceiling::RateLimitCeiling;
use crate::client_address::canonical;

/// Attempts per email by default: 5 at once, then one every 12 seconds.
pub const PER_EMAIL: (u32, u32) = (5, 5);
/// Attempts per client address by default: 20 at once, then one every 2 seconds.
pub const PER_ADDRESS: (u32, u32) = (30, 20);

fn limit((rate, burst): (u32, u32)) -> RateLimit {
    RateLimit::new(rate, burst).unwrap_or_else(|_| unreachable!("valid constant limits"))
}

/// [`PER_EMAIL`] as the configuration's default.
pub fn per_email_default() -> RateLimitCeiling {
    RateLimitCeiling::new(limit(PER_EMAIL))
}

/// [`PER_ADDRESS`] as the configuration's default.
pub fn per_address_default() -> RateLimitCeiling {
    RateLimitCeiling::new(limit(PER_ADDRESS))
}

/// Bound on the entries of each map (see [`make_room`]).
const CAPACITY: usize = 100_000;

/// The login throttle.
#[derive(Debug)]
pub struct LoginThrottle {
    per_email: RateLimit,
    per_address: RateLimit,
    emails: Mutex<HashMap<String, GcraState>>,
    addresses: Mutex<HashMap<String, GcraState>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(limit(PER_EMAIL), limit(PER_ADDRESS))
    }
}

fn check(
    map: &Mutex<HashMap<String, GcraState>>,
    key: &str,
    limit: RateLimit,
    now: Timestamp,
) -> Result<(), u64> {
    let Ok(mut map) = map.lock() else {
        return Ok(());
    };
    make_room(&mut map, now);
    let outcome = limit.check(map.entry(key.to_owned()).or_default(), now);
    if outcome.allowed {
        Ok(())
    } else {
        Err(outcome.retry_after_secs().max(1))
    }
}

/// Keeps `map` under [`CAPACITY`]: idle entries go first (forgetting them changes nothing);
/// if that leaves more than three quarters, the half that would be idle soonest goes too, and
/// the half held back longest (where a key under attack is) stays. Either way a quarter of
/// the capacity is free afterwards, so the sweep runs at most once per that many new entries.
fn make_room(map: &mut HashMap<String, GcraState>, now: Timestamp) {
    if map.len() < CAPACITY {
        return;
    }
    map.retain(|_, state| !state.is_idle(now));
    if map.len() <= CAPACITY / 4 * 3 {
        return;
    }
    let mut idle_from: Vec<u128> = map.values().map(GcraState::idle_from_nanos).collect();
    let middle = idle_from.len() / 2;
    let (_, &mut median, _) = idle_from.select_nth_unstable(middle);
    map.retain(|_, state| state.idle_from_nanos() > median);
}

/// The key an address is counted under: an IPv4 address as it is (an IPv4-mapped IPv6 one as
/// its IPv4 address), an IPv6 address as its /64 network; text that is no address, as it is.
fn address_key(address: &str) -> String {
    match address.parse().map(canonical) {
        Ok(IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

impl LoginThrottle {
    /// A throttle with these limits per email and per address.
    pub fn new(per_email: RateLimit, per_address: RateLimit) -> Self {
        LoginThrottle {
            per_email,
            per_address,
            emails: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `email` (lowercased) from `address`; `Err(seconds)` to wait when
    /// either is over its limit.
    pub fn attempt(&self, email: &str, address: Option<&str>, now: Timestamp) -> Result<(), u64> {
        if let Some(address) = address {
            check(
                &self.addresses,
                &address_key(address),
                self.per_address,
                now,
            )?;
        }
        check(&self.emails, email, self.per_email, now)
    }
}

/// Reports of leaked keys per client address by default: 10 at once, then one every 6 seconds.
pub const LEAK_REPORTS_PER_ADDRESS: (u32, u32) = (10, 10);

/// A throttle per client address alone (leak reports); a request without a known address
/// shares one allowance with the others like it.
#[derive(Debug)]
pub struct AddressThrottle {
    limit: RateLimit,
    addresses: Mutex<HashMap<String, GcraState>>,
}

impl Default for AddressThrottle {
    fn default() -> Self {
        AddressThrottle {
            limit: limit(LEAK_REPORTS_PER_ADDRESS),
            addresses: Mutex::new(HashMap::new()),
        }
    }
}

impl AddressThrottle {
    /// Counts one request from `address`; `Err(seconds)` to wait when it is over its limit.
    pub fn attempt(&self, address: Option<&str>, now: Timestamp) -> Result<(), u64> {
        let key = address.map_or_else(|| "unknown".to_owned(), address_key);
        check(&self.addresses, &key, self.limit, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_ten_leak_reports_at_once_then_one_every_six_seconds() {
        let throttle = AddressThrottle::default();
        let now = Timestamp(1_800_000_000_000);
        for report in 0..10 {
            assert_eq!(throttle.attempt(Some("10.0.0.1"), now), Ok(()), "{report}");
        }
        let wait = throttle
            .attempt(Some("10.0.0.1"), now)
            .expect_err("throttled");
        assert!((1..=6).contains(&wait), "{wait}");
        // Another address, and requests without one, have their own allowance.
        assert_eq!(throttle.attempt(Some("10.0.0.2"), now), Ok(()));
        assert_eq!(throttle.attempt(None, now), Ok(()));
        assert!(
            throttle
                .attempt(Some("10.0.0.1"), now.plus_millis(5_000))
                .is_err()
        );
        assert_eq!(
            throttle.attempt(Some("10.0.0.1"), now.plus_millis(6_000)),
            Ok(())
        );
    }

    #[test]
    fn an_email_gets_its_burst_then_waits() {
        let throttle = LoginThrottle::default();
        let now = Timestamp(1_800_000_000_000);
        for attempt in 0..PER_EMAIL.1 {
            assert_eq!(
                throttle.attempt("a@example.com", Some("10.0.0.1"), now),
                Ok(()),
                "{attempt}"
            );
        }
        let wait = throttle
            .attempt("a@example.com", Some("10.0.0.2"), now)
            .expect_err("throttled");
        assert!((1..=12).contains(&wait), "{wait}");
        // Another email is not affected; after the wait one more attempt passes.
        assert_eq!(
            throttle.attempt("b@example.com", Some("10.0.0.1"), now),
            Ok(())
        );
        let later = now.plus_millis(i64::try_from(wait).expect("small") * 1000);
        assert_eq!(
            throttle.attempt("a@example.com", Some("10.0.0.3"), later),
            Ok(())
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_network() {
        let throttle = LoginThrottle::default();
        let now = Timestamp(1_800_000_000_000);
        // Every attempt from a new address of one /64, each for a new email.
        for n in 0..PER_ADDRESS.1 {
            let address = format!("2001:db8:1:2::{:x}", n + 1);
            let email = format!("u{n}@example.com");
            assert_eq!(throttle.attempt(&email, Some(&address), now), Ok(()));
        }
        let next = throttle.attempt("next@example.com", Some("2001:db8:1:2:ffff::9"), now);
        assert!(next.is_err(), "the /64 has used its allowance");
        assert_eq!(
            throttle.attempt("next@example.com", Some("2001:db8:1:3::1"), now),
            Ok(()),
            "the next /64 has its own"
        );
        // An IPv4-mapped address is its IPv4 address.
        for n in 0..PER_ADDRESS.1 {
            let email = format!("v{n}@example.com");
            assert_eq!(throttle.attempt(&email, Some("192.0.2.7"), now), Ok(()));
        }
        let mapped = throttle.attempt("w@example.com", Some("::ffff:192.0.2.7"), now);
        assert!(mapped.is_err());
    }

    #[test]
    fn a_full_map_keeps_the_email_under_attack_held_back() {
        let throttle = LoginThrottle::default();
        let now = Timestamp(1_800_000_000_000);
        for _ in 0..PER_EMAIL.1 {
            assert_eq!(throttle.attempt("victim@example.com", None, now), Ok(()));
        }
        assert!(throttle.attempt("victim@example.com", None, now).is_err());
        // The map filled with other emails, one attempt each, none idle yet.
        let later = now.plus_millis(1_000);
        for n in 0..CAPACITY {
            let email = format!("junk{n}@example.com");
            assert_eq!(throttle.attempt(&email, None, later), Ok(()));
        }
        let held = throttle.emails.lock().expect("not poisoned").len();
        assert!(
            held < CAPACITY / 4 * 3,
            "{held} entries: a quarter of the room is free"
        );
        assert!(
            throttle.attempt("victim@example.com", None, later).is_err(),
            "still held back after the map made room"
        );
    }

    #[test]
    fn an_address_trying_many_emails_is_throttled() {
        let throttle = LoginThrottle::default();
        let now = Timestamp(1_800_000_000_000);
        for n in 0..PER_ADDRESS.1 {
            assert_eq!(
                throttle.attempt(&format!("u{n}@example.com"), Some("10.9.9.9"), now),
                Ok(())
            );
        }
        assert!(
            throttle
                .attempt("fresh@example.com", Some("10.9.9.9"), now)
                .is_err()
        );
    }
}
