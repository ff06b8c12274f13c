//! A claim on background work that one task of an isolate runs at a time (the table refresh
//! ahead of the freshness bound, the usage flusher), as one type for both.
//!
//! Each claim has a generation. A claim older than its stale bound gives way to a new claimant:
//! the runtime may cancel `waitUntil` work without dropping its future, so a claim can be left
//! behind for ever. Releasing (on drop) clears the slot only if the claim is still the current
//! one, so a superseded task that ends late never frees the claim of the task that replaced it.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Where a kind of background work keeps its claim.
#[derive(Debug, Default)]
pub struct ClaimSlot {
    /// The current claim: its generation and when it was taken (ms).
    current: Option<(u64, f64)>,
    /// Claims handed out so far (the last generation).
    issued: u64,
}

impl ClaimSlot {
    /// Whether a claim may be taken at `now_ms`: none is held, or the held one is older than
    /// `stale_ms`.
    pub fn is_free(&self, now_ms: f64, stale_ms: f64) -> bool {
        self.current
            .is_none_or(|(_, claimed_at)| now_ms - claimed_at >= stale_ms)
    }

    /// Takes a claim at `now_ms` (the caller checked [`ClaimSlot::is_free`]); its generation.
    fn take(&mut self, now_ms: f64) -> u64 {
        self.issued += 1;
        self.current = Some((self.issued, now_ms));
        self.issued
    }

    fn is_current(&self, generation: u64) -> bool {
        self.current.is_some_and(|(held, _)| held == generation)
    }

    fn release(&mut self, generation: u64) {
        if self.is_current(generation) {
            self.current = None;
        }
    }
}

/// The state that holds a [`ClaimSlot`]: an isolate-wide `thread_local!` and how to reach the
/// slot in it.
pub trait HoldsClaim: 'static {
    /// The slot.
    fn slot(&mut self) -> &mut ClaimSlot;
}

/// A taken claim; released when dropped (also when the runtime drops the task half-way).
pub struct Claim<T: HoldsClaim> {
    generation: u64,
    holder: &'static LocalKey<RefCell<T>>,
}

impl<T: HoldsClaim> std::fmt::Debug for Claim<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("generation", &self.generation)
            .finish()
    }
}

impl<T: HoldsClaim> Claim<T> {
    /// Takes the claim of `holder` at `now_ms` if it is free (see [`ClaimSlot::is_free`]) and
    /// `also` holds of the state.
    pub fn try_take(
        holder: &'static LocalKey<RefCell<T>>,
        now_ms: f64,
        stale_ms: f64,
        also: impl FnOnce(&T) -> bool,
    ) -> Option<Self> {
        holder.with(|state| {
            let mut state = state.borrow_mut();
            if !state.slot().is_free(now_ms, stale_ms) || !also(&state) {
                return None;
            }
            let generation = state.slot().take(now_ms);
            Some(Claim { generation, holder })
        })
    }

    /// Whether this is still the current claim (a stale one may have been superseded).
    pub fn is_current(&self) -> bool {
        self.holder
            .with(|state| state.borrow_mut().slot().is_current(self.generation))
    }
}

impl<T: HoldsClaim> Drop for Claim<T> {
    fn drop(&mut self) {
        let generation = self.generation;
        self.holder
            .with(|state| state.borrow_mut().slot().release(generation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Work {
        slot: ClaimSlot,
        pending: bool,
    }

    impl HoldsClaim for Work {
        fn slot(&mut self) -> &mut ClaimSlot {
            &mut self.slot
        }
    }

    thread_local! {
        static WORK: RefCell<Work> = RefCell::new(Work { pending: true, ..Work::default() });
    }

    const STALE: f64 = 1_000.0;

    fn take(now_ms: f64) -> Option<Claim<Work>> {
        Claim::try_take(&WORK, now_ms, STALE, |work| work.pending)
    }

    #[test]
    fn one_claim_at_a_time_released_when_dropped() {
        let first = take(0.0).expect("free");
        assert!(take(10.0).is_none(), "held");
        assert!(first.is_current());
        drop(first);
        assert!(take(10.0).is_some(), "released");
    }

    #[test]
    fn a_superseded_claim_released_late_keeps_its_successor_s_claim() {
        let lost = take(0.0).expect("free");
        assert!(take(STALE - 1.0).is_none(), "not yet stale");
        let newer = take(STALE).expect("the old claim is stale");
        assert!(!lost.is_current());
        drop(lost);
        assert!(newer.is_current(), "the late release freed nothing");
        assert!(
            take(STALE).is_none(),
            "the newer task still holds its claim"
        );
        drop(newer);
        assert!(take(STALE).is_some());
    }

    #[test]
    fn a_claim_needs_what_the_holder_asks_for() {
        WORK.with(|work| work.borrow_mut().pending = false);
        assert!(take(0.0).is_none());
        WORK.with(|work| work.borrow_mut().pending = true);
        assert!(take(0.0).is_some());
    }
}
