//! Refused management calls in the audit log, coalesced: a flood of 401s and 403s from one key
//! must neither serialize key management (every audit write takes the organization's lock) nor
//! bury the log.
//!
//! The first refusal of a key for a reason opens a one-minute window ([`WINDOW_MS`], on the
//! application's [`Clock`](crate::state::Clock)) and is recorded at once, with `count` 1. Further
//! refusals of that key for that reason within the window are only counted in memory; when the
//! window closes they become one record whose `count` says how many it stands for (and
//! `window_start` / `last_at`, in milliseconds, when they happened; ip, user agent and request id
//! are the last one's). So the `count`s of a key's `auth_failed` records add up to its refusals.
//!
//! Closed windows are written by [`spawn`]'s task every [`FLUSH_INTERVAL`] (started by
//! [`crate::Application::serve`]), or by the key's next refusal if that comes first; on shutdown
//! the task writes every window it holds, closed or not ([`flush_all`]). A record whose write
//! fails (the database refusing) is kept and written with the next flush, so the counts still
//! add up once the database is back (at most
//! [`MAX_UNWRITTEN`](crate::refusal_log::MAX_UNWRITTEN) are kept). A commit whose answer is
//! lost (the connection cut after the database committed) is taken for a failure, so its
//! records would be written twice: the one case where counts can add up to more.
//!
//! Memory is bounded: at most [`MAX_TRACKED_KEYS`] keys have a window. Past that, refusals of
//! other keys are counted per organization and reason instead (an *overflow* window, recorded
//! the same way with `"overflow": true` and no key), so nothing goes uncounted and the table
//! cannot grow with the number of keys an attacker holds.
//!
//! [`WINDOW_MS`]: crate::refusal_log::WINDOW_MS
//! [`MAX_TRACKED_KEYS`]: crate::refusal_log::MAX_TRACKED_KEYS

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::stopped_after;
use crate::refusal_log::{PendingRecord, write};
use crate::state::AppState;

/// How often the background task writes the windows that have closed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Writes the summaries of the windows closed at the state's current time; how many.
pub async fn flush_closed(state: &AppState) -> usize {
    let records = state.refusals.take_closed(state.now());
    write(state.store.as_ref(), &state.refusals, state.now(), records).await
}

/// What the last flush at shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalFlush {
    /// Records written.
    pub written: usize,
    /// Records the database still refused, so lost (and logged as such).
    pub lost_records: usize,
    /// How many refused calls those lost records stood for.
    pub lost_refusals: u64,
}

/// Writes the summaries of every window, closed or not (at shutdown). What the database still
/// refuses is lost, and logged as such: nothing is left held.
pub async fn flush_all(state: &AppState) -> FinalFlush {
    let records = state.refusals.take_all();
    let written = write(state.store.as_ref(), &state.refusals, state.now(), records).await;
    let lost = state.refusals.take_all();
    let lost_refusals: u64 = lost.iter().map(PendingRecord::refusals).sum();
    if !lost.is_empty() {
        tracing::error!(
            records = lost.len(),
            refusals = lost_refusals,
            "audit records of refused management calls lost at shutdown: the database refused them"
        );
    }
    FinalFlush {
        written,
        lost_records: lost.len(),
        lost_refusals,
    }
}

/// Starts the task that writes closed windows every [`FLUSH_INTERVAL`]; when `shutdown` turns
/// true (or its sender is dropped) it writes every window it still holds and ends.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if stopped_after(FLUSH_INTERVAL, &mut shutdown).await {
                flush_all(&state).await;
                return;
            }
            flush_closed(&state).await;
        }
    })
}
