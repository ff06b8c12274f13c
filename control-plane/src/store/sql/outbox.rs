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

/// Claims up to `limit` due deliveries of enabled endpoints until `lease_until`, oldest due
/// first, giving no endpoint more than [`ENDPOINT_IN_FLIGHT`] deliveries in flight (an
/// endpoint slow to answer holds only those), and reads what sending each needs.
///
/// What a claim reads is bounded by the endpoints with pending deliveries and the places it
/// fills, never by how many deliveries are due: an endpoint slow to answer can have a due
/// backlog of any size beyond its places, and it is never read (`webhook_deliveries_by_endpoint`,
/// migration 0016). Two statements:
/// - [`open_endpoints`]: the endpoints with places left and a delivery due, by their oldest
///   due delivery, at most twice `limit` of them (the oldest `limit` due deliveries within
///   their places are all those of the first `limit`: an endpoint left out has none older than
///   theirs; the others stand in for deliveries another instance is claiming meanwhile);
/// - then [`claim_statement`]: each of those endpoints' 32 oldest due deliveries, through the
///   same index, and of them the `limit` oldest within their endpoints' places, claimed.
pub(super) async fn claim(
    pool: &AnyPool,
    backend: Backend,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let indexes = ClaimIndexes::of(backend);
    // SQLite: the claim's writer from the start. A transaction that reads first and writes
    // later fails with `database is locked`, without waiting, when another writer committed
    // after its read began (two instances' claims at once).
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    let open = open_endpoints(&mut tx, &indexes, now, limit).await?;
    if open.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    // Lines past the open endpoints (see `claim_statement`) name no endpoint.
    let lines = open.len().next_power_of_two();
    let mut query = claim_statement(backend, &indexes, lines)
        .bind(lease_until.as_millis())
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .bind(i64::from(ENDPOINT_IN_FLIGHT));
    for at in 0..lines {
        let endpoint = open.get(at).map_or([0; 16], |endpoint| endpoint.to_bytes());
        query = query.bind(id_bytes(endpoint));
    }
    let claimed = query.fetch_all(&mut *tx).await?;
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

/// The statement claiming from the open endpoints' deliveries, as one statement sees them (so
/// that, as before the claim read per endpoint, instances claiming at once cannot together give
/// an endpoint more than its places):
/// - `lines`: each endpoint's [`ENDPOINT_IN_FLIGHT`] oldest due deliveries not in flight (its
///   id the `$5`… parameters; `lines` of them, the open endpoints' count rounded up to a power
///   of two by the caller, the lines past the open endpoints naming none, so that the
///   statement's text, cached per connection, takes a few forms only);
/// - `busy` and `ranked`: each one's place in its endpoint's line, counting those in flight;
/// - `picked`: the `limit` oldest within their endpoint's places, of endpoints still enabled,
///   locked on PostgreSQL, where rows another claim holds are skipped, not replaced by later
///   ones (their places are counted as taken). Its state check is written so that SQLite
///   finds the rows by their primary key rather than reading every pending delivery, and
///   PostgreSQL checks it again on the row it locks.
fn claim_statement(
    backend: Backend,
    indexes: &ClaimIndexes,
    lines: usize,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let ClaimIndexes {
        by_endpoint,
        in_flight,
    } = indexes;
    let lines: Vec<String> = (0..lines)
        .map(|at| {
            format!(
                "SELECT * FROM (SELECT d.endpoint_id, d.event_id, d.next_attempt_at \
                 FROM webhook_deliveries d {by_endpoint} \
                 WHERE d.endpoint_id = ${} AND d.state = 'pending' \
                   AND d.next_attempt_at <= $2 AND d.claimed_until <= $2 \
                 ORDER BY d.next_attempt_at, d.event_id LIMIT {ENDPOINT_IN_FLIGHT}) AS line{at}",
                at + 5
            )
        })
        .collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH lines AS MATERIALIZED ({}), \
         busy AS MATERIALIZED ( \
           SELECT f.endpoint_id, COUNT(*) AS n FROM webhook_deliveries f {in_flight} \
           WHERE f.state = 'pending' AND f.claimed_until > $2 \
             AND f.endpoint_id IN (SELECT endpoint_id FROM lines) GROUP BY f.endpoint_id), \
         ranked AS MATERIALIZED ( \
           SELECT l.endpoint_id, l.event_id, ROW_NUMBER() OVER ( \
               PARTITION BY l.endpoint_id ORDER BY l.next_attempt_at, l.event_id) \
             + COALESCE((SELECT b.n FROM busy b WHERE b.endpoint_id = l.endpoint_id), 0) \
             AS place \
           FROM lines l), \
         picked AS MATERIALIZED ( \
           SELECT d.endpoint_id, d.event_id FROM webhook_deliveries d \
           JOIN webhook_endpoints e ON e.id = d.endpoint_id \
           WHERE (d.endpoint_id, d.event_id) IN \
               (SELECT endpoint_id, event_id FROM ranked WHERE place <= $4) \
             AND e.enabled = 1 \
             AND CASE WHEN d.state = 'pending' AND d.claimed_until <= $2 THEN 1 ELSE 0 END = 1 \
           ORDER BY d.next_attempt_at, d.event_id LIMIT $3 {skip_locked}) \
         UPDATE webhook_deliveries SET claimed_until = $1, redeliver = 0 \
         WHERE (endpoint_id, event_id) IN (SELECT endpoint_id, event_id FROM picked) \
         RETURNING endpoint_id, event_id, attempts",
        lines.join(" UNION ALL ")
    )))
}

/// The indexes a claim reads, named on SQLite: without statistics its planner would take the
/// due index (`state`, `next_attempt_at`) for these, reading every pending delivery.
struct ClaimIndexes {
    /// Pending deliveries by endpoint, oldest due first.
    by_endpoint: &'static str,
    /// Pending deliveries by when their claim ends.
    in_flight: &'static str,
}

impl ClaimIndexes {
    fn of(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => ClaimIndexes {
                by_endpoint: "INDEXED BY webhook_deliveries_by_endpoint",
                in_flight: "INDEXED BY webhook_deliveries_in_flight",
            },
            Backend::Postgres => ClaimIndexes {
                by_endpoint: "",
                in_flight: "",
            },
        }
    }
}

/// The enabled endpoints with places left (fewer than [`ENDPOINT_IN_FLIGHT`] in flight) and a
/// delivery due, oldest due delivery first, at most twice `limit` (the first `limit` suffice,
/// unless another instance is claiming some of their deliveries at this moment).
///
/// `walk` visits each endpoint with a pending delivery once, one index step each (rather
/// than every pending delivery): a loose index scan, written as a recursive query because
/// neither database makes one of a `GROUP BY`. `busy` counts the deliveries in flight from
/// those alone.
async fn open_endpoints(
    connection: &mut AnyConnection,
    indexes: &ClaimIndexes,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<WebhookId>, StoreError> {
    let ClaimIndexes {
        by_endpoint,
        in_flight,
    } = indexes;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE walk (endpoint_id) AS ( \
           SELECT (SELECT p.endpoint_id FROM webhook_deliveries p {by_endpoint} \
             WHERE p.state = 'pending' ORDER BY p.endpoint_id, p.next_attempt_at LIMIT 1) \
           UNION ALL \
           SELECT (SELECT p.endpoint_id FROM webhook_deliveries p {by_endpoint} \
             WHERE p.state = 'pending' AND p.endpoint_id > w.endpoint_id \
             ORDER BY p.endpoint_id, p.next_attempt_at LIMIT 1) \
           FROM walk w WHERE w.endpoint_id IS NOT NULL), \
         busy AS MATERIALIZED ( \
           SELECT f.endpoint_id, COUNT(*) AS n FROM webhook_deliveries f {in_flight} \
           WHERE f.state = 'pending' AND f.claimed_until > $1 GROUP BY f.endpoint_id), \
         open AS MATERIALIZED ( \
           SELECT w.endpoint_id, \
             (SELECT d.next_attempt_at FROM webhook_deliveries d {by_endpoint} \
              WHERE d.endpoint_id = w.endpoint_id AND d.state = 'pending' \
                AND d.next_attempt_at <= $1 AND d.claimed_until <= $1 \
              ORDER BY d.next_attempt_at, d.event_id LIMIT 1) AS head \
           FROM walk w JOIN webhook_endpoints e ON e.id = w.endpoint_id \
           LEFT JOIN busy b ON b.endpoint_id = w.endpoint_id \
           WHERE e.enabled = 1 AND COALESCE(b.n, 0) < $2) \
         SELECT endpoint_id FROM open WHERE head IS NOT NULL \
         ORDER BY head, endpoint_id LIMIT $3"
    )))
    .bind(now.as_millis())
    .bind(i64::from(ENDPOINT_IN_FLIGHT))
    .bind(i64::from(limit) * 2)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| Ok(WebhookId::from_bytes(bytes16(row.try_get("endpoint_id")?)?)))
        .collect()
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
