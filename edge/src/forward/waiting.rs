//! The usage events of requests still at the origin, by handle (see `crate::forward`).
//!
//! Handles are never 0 (the entry module's "no event") and never two live at once. A request the
//! runtime cancels never reports back, so its entry would stay: once more than [`PURGE_ABOVE`]
//! entries wait, entries older than [`MAX_AGE_MS`] are dropped, at most once per
//! [`PURGE_EVERY_MS`].

use std::collections::HashMap;

/// Waiting entries above which old ones are dropped.
pub const PURGE_ABOVE: usize = 4_096;
/// How long an entry waits before a purge may drop it, in ms: far beyond any origin's time to
/// answer (the runtime gives up on a subrequest long before).
pub const MAX_AGE_MS: f64 = 15.0 * 60_000.0;
/// The least time between two purges, in ms.
pub const PURGE_EVERY_MS: f64 = 60_000.0;

/// Entries of type `T`, each with the time it came, by handle.
pub struct Waiting<T> {
    entries: HashMap<u32, (f64, T)>,
    /// The last handle given.
    last: u32,
    purged_ms: f64,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            entries: HashMap::new(),
            last: 0,
            purged_ms: f64::NEG_INFINITY,
        }
    }
}

impl<T> Waiting<T> {
    /// Keeps `entry`, come at `now_ms`; returns its handle and how many old entries a purge
    /// dropped to make room.
    pub fn hold(&mut self, now_ms: f64, entry: T) -> (u32, usize) {
        let mut dropped = 0;
        if self.entries.len() >= PURGE_ABOVE && now_ms - self.purged_ms >= PURGE_EVERY_MS {
            self.purged_ms = now_ms;
            let before = self.entries.len();
            self.entries
                .retain(|_, (since_ms, _)| now_ms - *since_ms < MAX_AGE_MS);
            dropped = before - self.entries.len();
        }
        let mut handle = self.last;
        loop {
            handle = handle.wrapping_add(1).max(1);
            if !self.entries.contains_key(&handle) {
                break;
            }
        }
        self.last = handle;
        self.entries.insert(handle, (now_ms, entry));
        (handle, dropped)
    }

    /// Takes the entry `handle` names (`None`: 0, unknown, taken or dropped).
    pub fn take(&mut self, handle: u32) -> Option<T> {
        self.entries.remove(&handle).map(|(_, entry)| entry)
    }

    /// How many entries wait.
    pub fn count(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_is_taken_once_by_its_own_nonzero_handle() {
        let mut waiting = Waiting::default();
        let (a, _) = waiting.hold(0.0, "a");
        let (b, _) = waiting.hold(0.0, "b");
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(waiting.take(b), Some("b"));
        assert_eq!(waiting.take(b), None);
        assert_eq!(waiting.take(0), None);
        assert_eq!(waiting.take(a), Some("a"));
        assert_eq!(waiting.count(), 0);
    }

    #[test]
    fn handles_wrap_past_zero_and_around_live_entries() {
        let mut waiting = Waiting::default();
        let (live, _) = waiting.hold(0.0, "live");
        waiting.last = u32::MAX - 1;
        let (last, _) = waiting.hold(0.0, "last");
        assert_eq!(last, u32::MAX);
        // 0 is skipped, and so is the handle still waiting.
        let (next, _) = waiting.hold(0.0, "next");
        assert_eq!((live, next), (1, 2));
        assert_eq!(waiting.take(live), Some("live"));
    }

    #[test]
    fn past_the_bound_only_entries_older_than_the_age_are_dropped_once_a_minute() {
        let mut waiting = Waiting::default();
        let old: Vec<u32> = (0..PURGE_ABOVE / 2)
            .map(|_| waiting.hold(0.0, ()).0)
            .collect();
        let young_at = MAX_AGE_MS - 1.0;
        let young: Vec<u32> = (0..PURGE_ABOVE / 2)
            .map(|_| waiting.hold(young_at, ()).0)
            .collect();
        // At the bound, past the age of the old ones: they go, the young stay.
        let (_, dropped) = waiting.hold(MAX_AGE_MS, ());
        assert_eq!(dropped, PURGE_ABOVE / 2);
        assert!(old.iter().all(|handle| waiting.take(*handle).is_none()));
        assert!(young.iter().all(|handle| waiting.take(*handle).is_some()));
        // Under the bound again: nothing is purged, whatever the age.
        let (_, dropped) = waiting.hold(10.0 * MAX_AGE_MS, ());
        assert_eq!((dropped, waiting.count()), (0, 2));
        // Back at the bound within a minute of the last purge: none either.
        for _ in 0..PURGE_ABOVE {
            waiting.hold(MAX_AGE_MS + 1.0, ());
        }
        let (_, dropped) = waiting.hold(MAX_AGE_MS + PURGE_EVERY_MS - 1.0, ());
        assert_eq!(dropped, 0);
    }
}
