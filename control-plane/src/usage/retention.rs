//! The retention cleanup: a background task that deletes usage events older than the retention
//! period (`KEYPLANE_USAGE_RETENTION_DAYS`, `keyplane serve --usage-retention-days`; 0 keeps
//! them forever). It sweeps once at start and then every [`INTERVAL`], and stops when
//! [`crate::Application::serve`] shuts down, like the pusher. The deletion itself is
//! [`crate::store::Store::delete_usage_before`], which tests call with an explicit cutoff.

use std::time::Duration;

use keyplane_shared::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::{HOUR, spawn_hourly};
use crate::state::AppState;
use crate::store::StoreError;

/// Time between two sweeps.
pub const INTERVAL: Duration = HOUR;
/// The default retention period, in days.
pub const DEFAULT_DAYS: u32 = 30;

const DAY_MS: i64 = 86_400_000;

/// The oldest time kept at `now` when events are kept `days` days.
pub fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    now.plus_millis(-i64::from(days) * DAY_MS)
}

/// Starts the cleanup, or nothing when `days` is 0 (events are kept forever). It stops when
/// `shutdown` turns true or the returned task is aborted.
pub fn spawn(
    state: AppState,
    days: u32,
    shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    (days > 0).then(|| {
        spawn_hourly(
            "the usage retention cleanup",
            state,
            shutdown,
            move |state| async move { sweep(&state, days).await },
        )
    })
}

/// Deletes the events older than `days` days at the state's current time; how many.
pub async fn sweep(state: &AppState, days: u32) -> Result<u64, StoreError> {
    let cutoff = cutoff(state.now(), days);
    let deleted = state.store.delete_usage_before(cutoff).await?;
    state.metrics.usage_expired.inc_by(deleted);
    if deleted > 0 {
        tracing::info!(
            deleted,
            days,
            "usage events past the retention period deleted"
        );
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_days_before_now() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(cutoff(now, 30), Timestamp(1_800_000_000_000 - 30 * DAY_MS));
        assert_eq!(cutoff(now, 1), Timestamp(1_800_000_000_000 - DAY_MS));
    }
}
