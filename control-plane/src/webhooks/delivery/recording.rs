//! Recording attempts as they end: one task per [`Deliverer`](super::Deliverer) gathers the
//! attempts that end together into one transaction, counts what they came to, then frees
//! their places; and [`record`], which falls back to one transaction per attempt when the
//! store refuses them together.

use tokio::sync::{mpsc, watch};

use super::{Ended, GATHER, RECORD_BATCH, Tally};
use crate::state::AppState;
use crate::store::{Attempt, ClaimedDelivery, FailureStreak, NextStep, StoreError};
use crate::webhooks::backoff::{DISABLE_AFTER_MS, RETRY_WINDOW_MS};

/// Records the attempts as they end: all that ended meanwhile (at most [`RECORD_BATCH`]) in
/// one transaction, then frees their places. Ends once every sender is gone.
pub(super) async fn record_as_they_end(
    state: AppState,
    mut queue: mpsc::UnboundedReceiver<Ended>,
    tally: watch::Sender<Tally>,
) {
    let mut ended = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut ended, RECORD_BATCH).await > 0 {
        // Attempts sent together end together: those ending within a moment share the
        // transaction (one at a time, each would be a transaction, and a claim after it).
        tokio::time::sleep(GATHER).await;
        while ended.len() < RECORD_BATCH
            && let Ok(more) = queue.try_recv()
        {
            ended.push(more);
        }
        let (attempts, places): (Vec<_>, Vec<_>) = ended
            .drain(..)
            .map(|ended| (ended.attempt, ended.place))
            .unzip();
        let done = record(&state, &attempts).await;
        // Counted before the places are freed: a caller waiting for every place sees them.
        tally.send_modify(|tally| tally.add(done));
        drop(places);
    }
}

/// Records `attempts` (and what follows each) in one transaction; if the store refuses that
/// (not if it is unavailable or busy, which would refuse each alone as well), each in its own,
/// so that one attempt it refuses (say, one recorded already by an instance that took its
/// delivery when the lease ended while it waited here) does not take the others with it.
/// What could not be recorded is counted as `unrecorded`: its delivery is claimed again when
/// its lease ends.
pub async fn record(state: &AppState, attempts: &[(ClaimedDelivery, Attempt, NextStep)]) -> Tally {
    let count = attempts.len();
    if count == 0 {
        return Tally::default();
    }
    let error = match record_together(state, attempts).await {
        Ok(done) => return done,
        Err(error) => error,
    };
    if count == 1 || matches!(error, StoreError::Unavailable(_) | StoreError::Busy) {
        tracing::warn!(%error, attempts = count, "recording webhook attempts failed; their deliveries are tried again when the lease ends");
        return Tally {
            unrecorded: count,
            ..Tally::default()
        };
    }
    tracing::warn!(%error, attempts = count, "recording webhook attempts together failed; recording each alone");
    let mut done = Tally::default();
    for attempt in attempts {
        match record_together(state, std::slice::from_ref(attempt)).await {
            Ok(one) => done.add(one),
            Err(error) => {
                tracing::warn!(%error, "recording a webhook attempt failed; its delivery is tried again when the lease ends");
                done.unrecorded += 1;
            }
        }
    }
    done
}

/// Records `attempts` (and what follows each) in one transaction.
async fn record_together(
    state: &AppState,
    attempts: &[(ClaimedDelivery, Attempt, NextStep)],
) -> Result<Tally, StoreError> {
    let mut done = Tally::default();
    for (_, _, next) in attempts {
        done.attempted += 1;
        done.delivered += usize::from(*next == NextStep::Delivered);
    }
    let disabled = state
        .store
        .record_attempts(
            attempts,
            FailureStreak {
                disable_after_ms: DISABLE_AFTER_MS,
                // Retries of one event come at most 6 hours apart within its 24 hours: a day
                // without any attempt means the endpoint was idle, not failing.
                idle_gap_ms: RETRY_WINDOW_MS,
            },
        )
        .await?;
    done.disabled = disabled.iter().filter(|now| **now).count();
    if done.disabled > 0 {
        tracing::warn!(
            endpoints = done.disabled,
            "webhook endpoints disabled after failing for 5 days"
        );
    }
    Ok(done)
}
