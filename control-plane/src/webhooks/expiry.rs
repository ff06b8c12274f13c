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
    // `key.expiring` notices have a lead time; `key.expired` ones are not emailed.
    let (Some(_), Some(to)) = (notice.lead_ms, notice.owner_email.as_deref()) else {
        return;
    };
    let within = time_left(notice.expires_at.as_millis() - state.now().as_millis());
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

/// The time from now to an expiry `left_ms` away, as the reminder says it: in days from a day
/// on, else in hours from an hour on, else in minutes, each rounded to the nearest (a notice
/// sent a few seconds after its 7-day mark says 7 days, not 6; a key made an hour before its
/// expiry is told 1 hour, not its organization's 1-day lead time).
fn time_left(left_ms: i64) -> String {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let (count, unit) = match left_ms {
        ms if ms >= DAY - HOUR / 2 => ((ms + DAY / 2) / DAY, "day"),
        ms if ms >= HOUR - MINUTE / 2 => ((ms + HOUR / 2) / HOUR, "hour"),
        ms => (((ms + MINUTE / 2) / MINUTE).max(1), "minute"),
    };
    match count {
        1 => format!("1 {unit}"),
        _ => format!("{count} {unit}s"),
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

#[cfg(test)]
mod tests {
    use super::time_left;

    #[test]
    fn the_time_left_is_said_in_the_largest_unit_rounded() {
        const MINUTE: i64 = 60_000;
        const HOUR: i64 = 60 * MINUTE;
        const DAY: i64 = 24 * HOUR;
        for (left, said) in [
            (7 * DAY - 30_000, "7 days"),
            (7 * DAY, "7 days"),
            (DAY + 3 * HOUR, "1 day"),
            (DAY - 10 * MINUTE, "1 day"),
            (23 * HOUR, "23 hours"),
            (HOUR, "1 hour"),
            (HOUR - 20_000, "1 hour"),
            (45 * MINUTE, "45 minutes"),
            (MINUTE, "1 minute"),
            (5_000, "1 minute"),
        ] {
            assert_eq!(time_left(left), said, "{left} ms");
        }
    }
}
