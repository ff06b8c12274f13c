//! The webhook history cleanup: a background task that deletes what the outbox no longer needs
//! once it is [`KEPT_FOR`] old: every attempt, every delivery that is no longer pending
//! (delivered, or given up after its 24 hours of retries), and every event no delivery refers
//! to any more; the `key.rate_limited` notice rows of hours more than [`NOTICES_KEPT_FOR`]
//! past (a usage report resent for such an hour is long over); and the `key.expiring` and
//! `key.expired` notice rows of keys whose expiry is that long past (the expiry scheduler looks
//! back a day at most). Without it those tables grow with every key change, every attempt,
//! every rate-limited hour and every key that expires. It sweeps once at start
//! and then every [`INTERVAL`], and stops when [`crate::Application::serve`] shuts down. Safe
//! on every instance: two sweeps at once delete each row once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::{HOUR, spawn_hourly};
use crate::state::AppState;
use crate::store::sql::EXPIRED_WINDOW_MS;
use crate::store::{StoreError, WebhookHistorySwept};
use crate::timestamps::before;

/// Time between two sweeps.
pub const INTERVAL: Duration = HOUR;
/// How long attempts, settled deliveries and their events are kept (listed by
/// `GET /v1/webhooks/{id}/attempts`, sent again by redeliver).
pub const KEPT_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a `key.rate_limited` notice row is kept, and the expiry notice rows of a key past
/// its expiry.
pub const NOTICES_KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

// A key's expiry notice rows stay while the expiry scheduler may still look at it: without its
// `expired` row, a key that expired within the window would be announced again.
const _: () = assert!(NOTICES_KEPT_FOR.as_millis() > EXPIRED_WINDOW_MS as u128);

/// Starts the cleanup; it stops when `shutdown` turns true or the task is aborted.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    spawn_hourly(
        "the webhook history cleanup",
        state,
        shutdown,
        |state| async move { sweep(&state).await },
    )
}

/// Deletes the history older than [`KEPT_FOR`] (notices: [`NOTICES_KEPT_FOR`]) at the state's
/// current time.
pub async fn sweep(state: &AppState) -> Result<WebhookHistorySwept, StoreError> {
    let now = state.now();
    let swept = state
        .store
        .delete_webhook_history(before(now, KEPT_FOR), before(now, NOTICES_KEPT_FOR))
        .await?;
    if swept != WebhookHistorySwept::default() {
        tracing::info!(
            attempts = swept.attempts,
            deliveries = swept.deliveries,
            events = swept.events,
            notices = swept.notices,
            expiry_notices = swept.expiry_notices,
            "webhook history past its time deleted"
        );
    }
    Ok(swept)
}
