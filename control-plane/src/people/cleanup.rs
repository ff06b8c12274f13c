//! The sign-in cleanup: a background task that deletes what can never sign anyone in again,
//! sessions past their absolute expiry and portal links past theirs, so neither table grows
//! with every sign-in and every embedded page a host product opens. It sweeps once at start
//! and then every [`INTERVAL`], keeping each spent row for [`KEPT_FOR`] (a recent session
//! still shows in a support look at the database), and stops when
//! [`crate::Application::serve`] shuts down. Safe on every instance: two sweeps at once
//! delete each row once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::{HOUR, spawn_hourly};
use crate::state::AppState;
use crate::store::StoreError;

/// Time between two sweeps.
pub const INTERVAL: Duration = HOUR;
/// How long a spent session or link is kept past its expiry.
pub const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Sessions past their expiry.
    pub sessions: u64,
    /// Portal links past theirs.
    pub portal_links: u64,
}

/// Starts the cleanup; it stops when `shutdown` turns true or the task is aborted.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    spawn_hourly("the sign-in cleanup", state, shutdown, |state| async move {
        sweep(&state).await
    })
}

/// Deletes the sessions and portal links that expired more than [`KEPT_FOR`] before the
/// state's current time.
pub async fn sweep(state: &AppState) -> Result<Swept, StoreError> {
    let before = crate::timestamps::before(state.now(), KEPT_FOR);
    let swept = Swept {
        sessions: state.store.delete_spent_sessions(before).await?,
        portal_links: state.store.delete_spent_portal_links(before).await?,
    };
    if swept != Swept::default() {
        tracing::info!(
            sessions = swept.sessions,
            portal_links = swept.portal_links,
            "spent sessions and portal links deleted"
        );
    }
    Ok(swept)
}
