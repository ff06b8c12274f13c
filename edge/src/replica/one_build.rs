//! One snapshot build at a time in an isolate. A read of the store that is answered with a
//! whole table (a cold isolate, a new generation, a copy too far behind) builds that table
//! beside whatever the isolate holds; requests that arrive together would each build their
//! own, and a burst of eight first requests with 300k keys took 132 MB, past an isolate's
//! 128 MB. So the first snapshot answer takes the claim here and builds; a request whose
//! answer is a snapshot while another is built drops it, and waits for the build by polling
//! the copy's freshness on its own timer (a request cannot wait on another request's work:
//! the runtime cancels it).

use std::cell::RefCell;

use crate::claim::{Claim, ClaimSlot, HoldsClaim};

/// A build claimed longer ago than this was cancelled without being dropped: another request
/// may build. Far past a build of 1.5M keys (some 150 ms here).
const STALE_BUILD_MS: f64 = 10_000.0;

#[derive(Default)]
pub struct Build {
    slot: ClaimSlot,
}

impl HoldsClaim for Build {
    fn slot(&mut self) -> &mut ClaimSlot {
        &mut self.slot
    }
}

thread_local! {
    static BUILD: RefCell<Build> = RefCell::new(Build::default());
}

/// The right to build a table from a snapshot answer; released when dropped.
pub type BuildClaim = Claim<Build>;

/// Claims the build at `now_ms`, unless another request's build is under way.
pub fn try_claim(now_ms: f64) -> Option<BuildClaim> {
    Claim::try_take(&BUILD, now_ms, STALE_BUILD_MS, |_| true)
}

/// Whether another request's build is under way at `now_ms`.
pub fn in_flight(now_ms: f64) -> bool {
    BUILD.with(|build| !build.borrow().slot.is_free(now_ms, STALE_BUILD_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_build_at_a_time_until_it_ends_or_goes_stale() {
        assert!(!in_flight(0.0));
        let first = try_claim(0.0).expect("free");
        assert!(in_flight(1.0));
        assert!(try_claim(1.0).is_none(), "a second build waits");
        assert!(
            !in_flight(STALE_BUILD_MS),
            "a build never dropped gives way"
        );
        drop(first);
        assert!(!in_flight(1.0));
        assert!(try_claim(1.0).is_some());
    }
}
