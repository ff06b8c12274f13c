//! When a failed delivery is tried again (pure): exponential backoff from 10 seconds, tripling
//! each time and capped at 6 hours, for up to 24 hours after the event; an endpoint whose
//! deliveries have all failed for 5 days is disabled (counted from the first failure after a
//! day without any attempt: the store's `record_attempt`).
//!
//! Attempts come 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min, 40.5 min, 2 h, 6 h, 6 h, 6 h ... after
//! the one before, while they stay within the 24 hours: 11 attempts in all for an endpoint that
//! never answers.

use keyplane_shared::Timestamp;

use crate::store::NextStep;

/// The first retry's delay, in milliseconds.
pub const FIRST_DELAY_MS: i64 = 10_000;
/// The longest delay between two attempts, in milliseconds.
pub const MAX_DELAY_MS: i64 = 6 * 3_600_000;
/// How long after its event a delivery is still tried, in milliseconds.
pub const RETRY_WINDOW_MS: i64 = 24 * 3_600_000;
/// How long an endpoint may fail without a success before it is disabled, in milliseconds.
pub const DISABLE_AFTER_MS: i64 = 5 * 24 * 3_600_000;

/// The delay after failed attempt number `attempt` (1 for the first).
pub fn delay_after(attempt: u32) -> i64 {
    let mut delay = FIRST_DELAY_MS;
    for _ in 1..attempt {
        delay = (delay * 3).min(MAX_DELAY_MS);
        if delay == MAX_DELAY_MS {
            break;
        }
    }
    delay
}

/// What follows failed attempt number `attempt`, made at `now`, of an event made at `event_at`.
pub fn after_failure(event_at: Timestamp, attempt: u32, now: Timestamp) -> NextStep {
    let next = now.as_millis().saturating_add(delay_after(attempt));
    if next > event_at.as_millis().saturating_add(RETRY_WINDOW_MS) {
        NextStep::GiveUp
    } else {
        NextStep::RetryAt(Timestamp(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_triple_up_to_six_hours() {
        let delays: Vec<i64> = (1..=9).map(delay_after).collect();
        assert_eq!(
            delays,
            [
                10_000,
                30_000,
                90_000,
                270_000,
                810_000,
                2_430_000,
                7_290_000,
                MAX_DELAY_MS,
                MAX_DELAY_MS
            ]
        );
    }

    #[test]
    fn an_endpoint_that_never_answers_is_tried_for_24_hours_then_given_up() {
        let event_at = Timestamp(0);
        let mut now = event_at;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match after_failure(event_at, attempts, now) {
                NextStep::RetryAt(at) => {
                    assert!(at.as_millis() <= RETRY_WINDOW_MS);
                    now = at;
                }
                NextStep::GiveUp => break,
                NextStep::Delivered => unreachable!(),
            }
        }
        assert_eq!(attempts, 11);
        assert!(
            now.as_millis() > 20 * 3_600_000,
            "stopped early, at {now:?}"
        );
    }
}
