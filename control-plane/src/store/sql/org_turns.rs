//! Turns for one organization's writers in this process, taken before a connection is.
//!
//! A mutation of an organization locks the organization's row first (`journal.rs`), so its
//! writers run one at a time in the database anyway. Without a turn here, every writer waiting
//! for that lock would hold a pooled connection while it waits: twenty changes to one
//! organization at once (a script rotating its keys), or another instance holding the row a
//! while, could take the whole pool and stall every other call of this instance, reads of
//! other organizations included. With a turn, at most one writer per organization holds a
//! connection in this instance; the others wait here, holding nothing.
//!
//! A writer waits for its turn at most as long as it would have waited for a connection (the
//! pool's acquire timeout), then fails as [`StoreError::Busy`] (the API's 503
//! `unavailable`), as it would have when the pool was exhausted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use keyplane_shared::ids::OrgId;
use tokio::sync::OwnedMutexGuard;

use crate::store::StoreError;

/// The turns of the organizations that have writers in this process.
#[derive(Debug, Clone)]
pub(super) struct OrgTurns {
    inner: Arc<Mutex<Turns>>,
    /// Longest wait for a turn.
    wait: Duration,
}

/// One turn per organization with a writer holding or awaiting it; an entry whose turn no
/// writer holds any more is dead, and dropped when the map has doubled since it was last
/// swept.
#[derive(Debug, Default)]
struct Turns {
    by_org: HashMap<OrgId, Weak<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

/// An organization's turn, held by one writer until dropped.
#[derive(Debug)]
pub(super) struct OrgTurn {
    _guard: OwnedMutexGuard<()>,
}

/// Entries kept before the first sweep.
const FIRST_SWEEP_AT: usize = 64;

impl OrgTurns {
    /// Turns whose writers wait at most `wait`.
    pub(super) fn new(wait: Duration) -> Self {
        OrgTurns {
            inner: Arc::default(),
            wait,
        }
    }

    /// Waits for `org`'s turn (first come, first served); [`StoreError::Busy`] after the
    /// longest wait.
    pub(super) async fn take(&self, org: OrgId) -> Result<OrgTurn, StoreError> {
        let turn = self.turn_of(org);
        match tokio::time::timeout(self.wait, turn.lock_owned()).await {
            Ok(guard) => Ok(OrgTurn { _guard: guard }),
            Err(_) => Err(StoreError::Busy),
        }
    }

    /// `org`'s turn, made when no writer of it holds one.
    fn turn_of(&self, org: OrgId) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(turn) = turns.by_org.get(&org).and_then(Weak::upgrade) {
            return turn;
        }
        if turns.by_org.len() >= turns.sweep_at.max(FIRST_SWEEP_AT) {
            turns.by_org.retain(|_, turn| turn.strong_count() > 0);
            turns.sweep_at = 2 * turns.by_org.len();
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        turns.by_org.insert(org, Arc::downgrade(&turn));
        turn
    }

    /// Organizations in the map, dead entries included (for the tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_org
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(n: u8) -> OrgId {
        OrgId::from_bytes([n; 16])
    }

    #[tokio::test(start_paused = true)]
    async fn one_writer_of_an_organization_at_a_time_and_others_alongside() {
        let turns = OrgTurns::new(Duration::from_secs(5));
        let first = turns.take(org(1)).await.expect("free");
        // Another organization's writer goes ahead at once.
        let other = turns.take(org(2)).await.expect("another organization");
        drop(other);
        // The second writer of the first one waits for the turn, and gets it when it is
        // given back.
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(org(1)).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "waits while the turn is held");
        drop(first);
        assert!(waiting.await.expect("task").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_that_waits_longer_than_a_connection_would_is_told_busy() {
        let turns = OrgTurns::new(Duration::from_secs(5));
        let _held = turns.take(org(1)).await.expect("free");
        let started = tokio::time::Instant::now();
        let refused = turns.take(org(1)).await;
        assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn turns_no_writer_holds_are_swept_as_the_map_grows() {
        let turns = OrgTurns::new(Duration::from_secs(5));
        let held = turns.take(org(0)).await.expect("free");
        for n in 1..=200u8 {
            drop(turns.take(org(n)).await.expect("free"));
        }
        assert!(
            turns.entries() <= 2 * FIRST_SWEEP_AT,
            "{} entries",
            turns.entries()
        );
        // The held one survived every sweep: its next writer waits for it.
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(org(0)).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert!(waiting.await.expect("task").is_ok());
    }
}
