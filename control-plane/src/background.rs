//! What the background tasks of `keyplane serve` share: a pause that ends early at shutdown.

use std::time::Duration;

use tokio::sync::watch;

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
