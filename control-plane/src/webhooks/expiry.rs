//! The expiry scheduler: every 30 seconds, announces `key.expiring` 7 days and 1 day before a
//! key's expiry (or when its organization chose: [`super::expiry_notices`]), and `key.expired` once it has passed (within a day), through the outbox like
//! every event, and emails the owner a reminder when SMTP is configured. Safe on every
//! instance: each notice is claimed by one insert (see the store).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::stopped_after;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::webhooks::ExpiryNotice;
use crate::timestamps::rfc3339;

/// How many days before an expiry `key.expiring` is sent where an organization chose nothing.
pub const DEFAULT_DAYS_BEFORE: [u32; 2] = [7, 1];
/// How often the scheduler looks.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// Keys per kind of notice per look (the rest wait for the next one, at once).
pub const BATCH: u32 = 500;

/// Announces what is due now, and with SMTP configured emails each `key.expiring` notice to
/// the key's owner when the owner has an email (once: a failed email is logged, not retried);
/// how many notices.
pub async fn announce_due(state: &AppState) -> Result<u64, StoreError> {
    let notices = state
        .store
        .announce_expiries(state.now(), &DEFAULT_DAYS_BEFORE, BATCH)
        .await?;
    if state.mailer.is_on() {
        for notice in &notices {
            remind(state, notice).await;
        }
    }
    Ok(notices.len() as u64)
}

async fn remind(state: &AppState, notice: &ExpiryNotice) {
    let (Some(lead), Some(to)) = (notice.lead_ms, notice.owner_email.as_deref()) else {
        return;
    };
    let within = match lead / 86_400_000 {
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    };
    if let Err(error) = state
        .mailer
        .send_expiry_reminder(
            to,
            &notice.name,
            &notice.truncated,
            &rfc3339(notice.expires_at),
            &within,
        )
        .await
    {
        tracing::warn!(%error, key_id = %notice.key_id, "an expiry reminder could not be emailed");
    }
}

/// Runs [`announce_due`] until shutdown.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pause = match announce_due(&state).await {
                Ok(count) if count >= u64::from(BATCH) => Duration::ZERO,
                Ok(_) => INTERVAL,
                Err(error) => {
                    tracing::warn!(%error, "the expiry scheduler could not read the keys; retrying");
                    INTERVAL
                }
            };
            if stopped_after(pause, &mut shutdown).await {
                return;
            }
        }
    })
}
