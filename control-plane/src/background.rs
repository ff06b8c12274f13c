//! What the background tasks of `keyplane serve` share: a pause that ends early at shutdown,
//! and the hourly task of the cleanups.

use std::fmt::Display;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Time between two runs of a [`spawn_hourly`] task.
pub const HOUR: Duration = Duration::from_secs(3600);

/// Starts a task that runs `step` on the state at once and then every [`HOUR`] until
/// `shutdown` turns true (or its sender is gone); a failed run is logged as `<what> failed`
/// and the task goes on.
pub fn spawn_hourly<T, E, Run>(
    what: &'static str,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    step: impl Fn(AppState) -> Run + Send + 'static,
) -> JoinHandle<()>
where
    E: Display,
    Run: Future<Output = Result<T, E>> + Send,
{
    tokio::spawn(async move {
        loop {
            if let Err(error) = step(state.clone()).await {
                tracing::warn!(%error, "{what} failed; retrying next hour");
            }
            if stopped_after(HOUR, &mut shutdown).await {
                return;
            }
        }
    })
}

/// Waits `pause`, or less if `shutdown` changes first; whether the task must stop now
/// (`shutdown` turned true, or its sender is gone).
pub async fn stopped_after(pause: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_ends_at_shutdown_or_when_the_sender_is_gone() {
        let (stop, mut shutdown) = watch::channel(false);
        assert!(!stopped_after(Duration::from_millis(1), &mut shutdown).await);
        let _ = stop.send(true);
        let stopped = stopped_after(Duration::from_secs(3600), &mut shutdown);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), stopped)
                .await
                .expect("at once")
        );
        let (stop, mut shutdown) = watch::channel(false);
        drop(stop);
        assert!(stopped_after(Duration::from_secs(3600), &mut shutdown).await);
    }
}
