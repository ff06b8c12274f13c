//! The outbox's rows: an event and its deliveries written inside the transaction of the change
//! that causes it ([`enqueue`], called by the journal), deliveries claimed under a lease
//! ([`claim`]), attempts recorded ([`record_attempt`]), and one event sent again
//! ([`redeliver`]). An endpoint failing for too long is disabled in `webhooks.rs`.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{EventId, OrgId, WebhookId};
use sqlx::{AnyConnection, AnyPool, Row as _};

use super::Backend;
use super::people::id_bytes;
use super::rows::{bytes16, optional_time};
use super::sweep::{self, Expiring};
use super::webhook_rows::load_endpoint;
use crate::store::outbox::NewEvent;
use crate::store::webhooks::{
    Attempt, ClaimedDelivery, ENDPOINT_IN_FLIGHT, NextStep, WebhookHistorySwept,
};
use crate::store::{Conflict, StoreError};

/// Writes `event` with one delivery to each enabled endpoint of its organization that wants it,
/// due at once (so a `webhook.disabled` event, written after its endpoint was disabled, goes to
/// the others only). The event row is written only when some endpoint wants it; the number of
/// deliveries.
pub(super) async fn enqueue(
    connection: &mut AnyConnection,
    event: &NewEvent,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let deliveries = sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, \
         next_attempt_at, claimed_until, created_at) \
         SELECT e.id, $1, 'pending', 0, $2, 0, $2 FROM webhook_endpoints e \
         WHERE e.org_id = $3 AND e.enabled = 1 AND EXISTS ( \
           SELECT 1 FROM webhook_subscriptions s \
           WHERE s.endpoint_id = e.id AND s.event_type = $4)",
    )
    .bind(id_bytes(event.id.to_bytes()))
    .bind(now.as_millis())
    .bind(id_bytes(event.org.to_bytes()))
    .bind(event.kind.as_str())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if deliveries > 0 {
        sqlx::query(
            "INSERT INTO webhook_events (id, org_id, event_type, body, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_bytes(event.id.to_bytes()))
        .bind(id_bytes(event.org.to_bytes()))
        .bind(event.kind.as_str())
        .bind(event.body.clone())
        .bind(now.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    Ok(deliveries)
}

/// How many due deliveries a claim looks at per delivery it may take: enough that the
/// deliveries of an endpoint near its [`ENDPOINT_IN_FLIGHT`] leave room for others'.
const CANDIDATES_PER_PLACE: u32 = 8;

/// Claims up to `limit` due deliveries of enabled endpoints until `lease_until`, oldest due
/// first, giving no endpoint more than [`ENDPOINT_IN_FLIGHT`] deliveries in flight (an
/// endpoint slow to answer holds only those), and reads what sending each needs.
pub(super) async fn claim(
    pool: &AnyPool,
    backend: Backend,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    // PostgreSQL: rows another instance is claiming are skipped, not waited for. SQLite has
    // one writer at a time, which is the same guarantee.
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let mut tx = pool.begin().await?;
    // Each step is picked once (materialized CTEs): as a subquery of the UPDATE, PostgreSQL
    // may run a pick again for each row it updates, and the LIMIT no longer bounds the claim.
    // - `busy`: each endpoint's deliveries in flight, counted once per claim from the
    //   deliveries in flight alone (`webhook_deliveries_in_flight`), not once per due row;
    // - `candidates`: the oldest due deliveries of endpoints with places left, a few batches
    //   of them (a full endpoint's backlog is passed over before the LIMIT; one near its
    //   share can fill them, and the next claim, that endpoint full then, passes over it);
    // - `ranked`: each candidate's place in its endpoint's line, counting those in flight
    //   (PostgreSQL allows no window function beside `FOR UPDATE`, hence a step of its own);
    // - `picked`: the oldest candidates within their endpoint's places, locked.
    let claimed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH busy AS MATERIALIZED ( \
           SELECT f.endpoint_id, COUNT(*) AS n FROM webhook_deliveries f \
           WHERE f.state = 'pending' AND f.claimed_until > $2 GROUP BY f.endpoint_id), \
         candidates AS MATERIALIZED ( \
           SELECT d.endpoint_id, d.event_id, d.next_attempt_at FROM webhook_deliveries d \
           JOIN webhook_endpoints e ON e.id = d.endpoint_id \
           WHERE d.state = 'pending' AND d.next_attempt_at <= $2 AND d.claimed_until <= $2 \
             AND e.enabled = 1 \
             AND d.endpoint_id NOT IN (SELECT endpoint_id FROM busy WHERE n >= $4) \
           ORDER BY d.next_attempt_at LIMIT $5), \
         ranked AS MATERIALIZED ( \
           SELECT c.endpoint_id, c.event_id, ROW_NUMBER() OVER ( \
               PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.event_id) \
             + COALESCE((SELECT b.n FROM busy b WHERE b.endpoint_id = c.endpoint_id), 0) \
             AS place \
           FROM candidates c), \
         picked AS MATERIALIZED ( \
           SELECT d.endpoint_id, d.event_id FROM webhook_deliveries d \
           WHERE d.claimed_until <= $2 AND d.state = 'pending' \
             AND (d.endpoint_id, d.event_id) IN \
               (SELECT endpoint_id, event_id FROM ranked WHERE place <= $4) \
           ORDER BY d.next_attempt_at LIMIT $3 {skip_locked}) \
         UPDATE webhook_deliveries SET claimed_until = $1, redeliver = 0 \
         WHERE claimed_until <= $2 AND state = 'pending' \
           AND (endpoint_id, event_id) IN (SELECT endpoint_id, event_id FROM picked) \
         RETURNING endpoint_id, event_id, attempts"
    )))
    .bind(lease_until.as_millis())
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .bind(i64::from(ENDPOINT_IN_FLIGHT))
    .bind(i64::from(limit.saturating_mul(CANDIDATES_PER_PLACE)))
    .fetch_all(&mut *tx)
    .await?;
    let mut deliveries = Vec::with_capacity(claimed.len());
    for row in claimed {
        let endpoint_id = WebhookId::from_bytes(bytes16(row.try_get("endpoint_id")?)?);
        let event_id = EventId::from_bytes(bytes16(row.try_get("event_id")?)?);
        let endpoint = load_endpoint(&mut tx, None, endpoint_id).await?;
        let event = sqlx::query("SELECT body, created_at FROM webhook_events WHERE id = $1")
            .bind(id_bytes(event_id.to_bytes()))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(event) = event else {
            // Its event is gone (the history sweep took it while a redeliver made this
            // delivery pending again): nothing to send. Given up, so that it is not claimed,
            // and fails the claim, again and again.
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', claimed_until = 0 \
                 WHERE endpoint_id = $1 AND event_id = $2",
            )
            .bind(id_bytes(endpoint_id.to_bytes()))
            .bind(id_bytes(event_id.to_bytes()))
            .execute(&mut *tx)
            .await?;
            continue;
        };
        deliveries.push(ClaimedDelivery {
            endpoint,
            event_id,
            body: event.try_get("body")?,
            event_at: Timestamp(event.try_get("created_at")?),
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)
                .map_err(|_| StoreError::Corrupt("attempt count".into()))?,
        });
    }
    tx.commit().await?;
    deliveries.sort_by_key(|delivery| delivery.event_at);
    Ok(deliveries)
}

/// Records an attempt, moves the delivery on, and keeps the endpoint's failure streak (a new
/// one after `idle_gap_ms` without attempts); the streak's start when the attempt failed.
pub(super) async fn record_attempt(
    connection: &mut AnyConnection,
    delivery: &ClaimedDelivery,
    attempt: Attempt,
    next: NextStep,
    idle_gap_ms: i64,
) -> Result<Option<Timestamp>, StoreError> {
    let endpoint = id_bytes(delivery.endpoint.id.to_bytes());
    let event = id_bytes(delivery.event_id.to_bytes());
    sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, attempt, at, duration_ms, status, \
         outcome, response) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(endpoint.clone())
    .bind(event.clone())
    .bind(i64::from(delivery.attempts) + 1)
    .bind(attempt.at.as_millis())
    .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
    .bind(attempt.status.map(i64::from))
    .bind(attempt.outcome.clone())
    .bind(attempt.response.clone())
    .execute(&mut *connection)
    .await?;
    let (state, next_at) = match next {
        NextStep::Delivered => ("delivered", attempt.at),
        NextStep::RetryAt(at) => ("pending", at),
        NextStep::GiveUp => ("failed", attempt.at),
    };
    // A redeliver asked for while this attempt was in flight (`redeliver`) still stands: the
    // delivery is due again at once, whatever this attempt's outcome.
    sqlx::query(
        "UPDATE webhook_deliveries SET \
           state = CASE WHEN redeliver = 1 THEN 'pending' ELSE $1 END, \
           next_attempt_at = CASE WHEN redeliver = 1 THEN $5 ELSE $2 END, \
           attempts = attempts + 1, claimed_until = 0, redeliver = 0 \
         WHERE endpoint_id = $3 AND event_id = $4",
    )
    .bind(state)
    .bind(next_at.as_millis())
    .bind(endpoint.clone())
    .bind(event)
    .bind(attempt.at.as_millis())
    .execute(&mut *connection)
    .await?;
    if next == NextStep::Delivered {
        // A success ends the failing streak, unless a failure made later was recorded before
        // it (a slow success, recorded when it ended): the endpoint stays as that failure
        // left it.
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_attempts f WHERE f.endpoint_id = $1 \
               AND f.at > $2 AND f.outcome <> 'delivered')",
        )
        .bind(endpoint)
        .bind(attempt.at.as_millis())
        .execute(&mut *connection)
        .await?;
        return Ok(None);
    }
    // A failing streak starts with this failure unless another attempt (a failure, as a
    // success would have ended it) came within `idle_gap_ms` before it; and a failure recorded
    // after a success made later or in the same millisecond (a slow attempt, recorded when it
    // ended) leaves the endpoint as that success left it.
    let row = sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = CASE \
           WHEN EXISTS (SELECT 1 FROM webhook_attempts s WHERE s.endpoint_id = $2 \
             AND s.at >= $1 AND s.outcome = 'delivered') THEN failing_since \
           WHEN failing_since IS NOT NULL AND EXISTS (SELECT 1 FROM webhook_attempts a \
             WHERE a.endpoint_id = $2 AND a.at < $1 AND a.at >= $3) THEN failing_since \
           ELSE $1 END \
         WHERE id = $2 RETURNING failing_since",
    )
    .bind(attempt.at.as_millis())
    .bind(endpoint)
    .bind(attempt.at.as_millis() - idle_gap_ms)
    .fetch_optional(&mut *connection)
    .await?;
    match row {
        Some(row) => optional_time(&row, "failing_since"),
        None => Ok(None),
    }
}

/// Makes the event due at once for the endpoint again (a new delivery if it had none).
pub(super) async fn redeliver(
    connection: &mut AnyConnection,
    org: OrgId,
    endpoint: WebhookId,
    event: EventId,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !load_endpoint(connection, Some(org), endpoint)
        .await?
        .enabled
    {
        // Only enabled endpoints are sent to: queued here, it would wait unsent.
        return Err(StoreError::Conflict(Conflict::WebhookDisabled));
    }
    let found = sqlx::query("SELECT org_id FROM webhook_events WHERE id = $1")
        .bind(id_bytes(event.to_bytes()))
        .fetch_optional(&mut *connection)
        .await?
        .ok_or(StoreError::NotFound)?;
    if bytes16(found.try_get("org_id")?)? != org.to_bytes() {
        return Err(StoreError::NotFound);
    }
    // A claimed delivery has an attempt in flight, whose outcome would settle it: it is
    // marked, so that the outcome leaves it due again (`record_attempt`).
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, \
           redeliver = CASE WHEN claimed_until > $1 THEN 1 ELSE 0 END \
         WHERE endpoint_id = $2 AND event_id = $3",
    )
    .bind(now.as_millis())
    .bind(id_bytes(endpoint.to_bytes()))
    .bind(id_bytes(event.to_bytes()))
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, \
             next_attempt_at, claimed_until, created_at) VALUES ($1, $2, 'pending', 0, $3, 0, $3)",
        )
        .bind(id_bytes(endpoint.to_bytes()))
        .bind(id_bytes(event.to_bytes()))
        .bind(now.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// Attempts, by when they were made.
const ATTEMPTS: Expiring = Expiring::by("webhook_attempts", "endpoint_id, event_id, attempt", "at");
/// Deliveries no longer pending, by when they were made.
const DELIVERIES: Expiring = Expiring {
    table: "webhook_deliveries",
    id: "endpoint_id, event_id",
    time: "created_at",
    also: "AND state <> 'pending'",
};
/// Events no delivery refers to any more.
const EVENTS: Expiring = Expiring {
    table: "webhook_events",
    id: "id",
    time: "created_at",
    also: "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
           WHERE d.event_id = webhook_events.id)",
};
/// `key.rate_limited` notice rows (`RATE_LIMITED_NOTICE_PREFIX`), by when they were sent.
const NOTICES: Expiring = Expiring {
    table: "key_notices",
    id: "key_id, notice",
    time: "sent_at",
    also: "AND notice LIKE 'rate_limited:%'",
};

/// Expiry notice rows (`EXPIRING_NOTICE_PREFIX<lead>`, `EXPIRED_NOTICE`) of keys whose expiry
/// passed before the cutoff, or that are gone: the expiry scheduler looks at no key that expired
/// more than `EXPIRED_WINDOW_MS` before, so no look asks for them again (an expired key's
/// expiry cannot be changed). The cutoff (`$1`) is compared with the key's expiry too.
const EXPIRY_NOTICES: Expiring = Expiring {
    table: "key_notices",
    id: "key_id, notice",
    time: "sent_at",
    also: "AND (notice LIKE 'expiring:%' OR notice = 'expired') \
           AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = key_notices.key_id \
           AND (k.expires_at IS NULL OR k.expires_at >= $1))",
};

/// The webhook history past its time (see `WebhookStore::delete_webhook_history`), attempts
/// first, then the deliveries, then the events left without one; and the notice rows no look
/// asks for any more.
pub(super) async fn delete_history(
    pool: &AnyPool,
    before: Timestamp,
    notices_before: Timestamp,
) -> Result<WebhookHistorySwept, StoreError> {
    Ok(WebhookHistorySwept {
        attempts: sweep::delete_before(pool, &ATTEMPTS, before).await?,
        deliveries: sweep::delete_before(pool, &DELIVERIES, before).await?,
        events: sweep::delete_before(pool, &EVENTS, before).await?,
        notices: sweep::delete_before(pool, &NOTICES, notices_before).await?,
        expiry_notices: sweep::delete_before(pool, &EXPIRY_NOTICES, notices_before).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::{EXPIRY_NOTICES, NOTICES};
    use crate::store::webhooks::{
        EXPIRED_NOTICE, EXPIRING_NOTICE_PREFIX, RATE_LIMITED_NOTICE_PREFIX,
    };

    #[test]
    fn the_notice_sweep_names_the_rate_limited_rows() {
        assert!(
            NOTICES
                .also
                .contains(&format!("'{RATE_LIMITED_NOTICE_PREFIX}%'"))
        );
    }

    #[test]
    fn the_expiry_notice_sweep_names_the_expiring_and_expired_rows() {
        let also = EXPIRY_NOTICES.also;
        assert!(also.contains(&format!("notice LIKE '{EXPIRING_NOTICE_PREFIX}%'")));
        assert!(also.contains(&format!("notice = '{EXPIRED_NOTICE}'")));
    }
}
