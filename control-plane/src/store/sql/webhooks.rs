//! Webhook endpoint rows: made, read, changed, given a new secret salt and removed, each change
//! audited in the organization's chain; and the attempts listed per endpoint. The outbox and
//! the deliveries are in `outbox.rs`.

use async_trait::async_trait;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{EventId, OrgId, WebhookId};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::journal::{Mutation, OrgMutation};
use super::members::note;
use super::outbox;
use super::people::id_bytes;
use super::rows::{bytes16, u64_of};
use super::webhook_rows::{
    ENDPOINT_COLUMNS, earlier_secrets_column, endpoint_from_row, load_endpoint, subscriptions,
};
use crate::store::outbox::{EventType, NewEvent, disabled_data};
use crate::store::records::{AuditAction, AuditContext, Page};
use crate::store::webhooks::{
    Attempt, AttemptRecord, ClaimedDelivery, FailureStreak, MAX_PREVIOUS_SECRETS,
    MAX_WEBHOOKS_PER_ORG, NewWebhook, NextStep, WebhookChanges, WebhookHistorySwept, WebhookRecord,
    WebhookStore,
};
use crate::store::{Conflict, StoreError};
use crate::timestamps::rfc3339;

async fn write_subscriptions(
    connection: &mut AnyConnection,
    id: WebhookId,
    events: &[EventType],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1")
        .bind(id_bytes(id.to_bytes()))
        .execute(&mut *connection)
        .await?;
    for kind in events {
        sqlx::query("INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES ($1, $2)")
            .bind(id_bytes(id.to_bytes()))
            .bind(kind.as_str())
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// What the audit log says about an endpoint (never a secret).
fn endpoint_json(record: &WebhookRecord) -> Value {
    json!({
        "id": record.id,
        "url": record.url,
        "events": record.events.iter().map(|kind| kind.as_str()).collect::<Vec<_>>(),
        "enabled": record.enabled,
    })
}

fn webhook_note(action: AuditAction, details: Value) -> crate::store::lifecycle::AuditNote {
    note(action, None, details)
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError> {
        let mut mutation = OrgMutation::begin_for(self, webhook.org, context, now).await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_endpoints WHERE org_id = $1")
            .bind(id_bytes(webhook.org.to_bytes()))
            .fetch_one(mutation.connection())
            .await?
            .try_get(0)?;
        if u64_of(count)? >= MAX_WEBHOOKS_PER_ORG {
            return Err(StoreError::Conflict(Conflict::TooManyWebhooks));
        }
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, org_id, url, description, enabled, secret_salt, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id_bytes(webhook.id.to_bytes()))
        .bind(id_bytes(webhook.org.to_bytes()))
        .bind(webhook.url.clone())
        .bind(webhook.description.clone())
        .bind(i64::from(webhook.enabled))
        .bind(webhook.salt.to_vec())
        .bind(now.as_millis())
        .execute(mutation.connection())
        .await?;
        write_subscriptions(mutation.connection(), webhook.id, &webhook.events).await?;
        let record = load_endpoint(mutation.connection(), None, webhook.id).await?;
        let details = json!({ "webhook": endpoint_json(&record) });
        mutation
            .audit(
                &self.sealer,
                webhook_note(AuditAction::WebhookCreated, details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await?;
        Ok(record)
    }

    async fn webhooks(&self, org: OrgId) -> Result<Vec<WebhookRecord>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(id_bytes(org.to_bytes()))
        .fetch_all(&mut *connection)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let id = WebhookId::from_bytes(bytes16(row.try_get("id")?)?);
            let events = subscriptions(&mut connection, id).await?;
            records.push(endpoint_from_row(&row, events)?);
        }
        Ok(records)
    }

    async fn webhook(&self, org: OrgId, id: WebhookId) -> Result<WebhookRecord, StoreError> {
        let mut connection = self.pool.acquire().await?;
        load_endpoint(&mut connection, Some(org), id).await
    }

    async fn update_webhook(
        &self,
        org: OrgId,
        id: WebhookId,
        changes: WebhookChanges,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError> {
        let mut mutation = OrgMutation::begin_for(self, org, context, now).await?;
        let before = load_endpoint(mutation.connection(), Some(org), id).await?;
        let enabling = changes.enabled == Some(true) && !before.enabled;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, enabled = $3, \
             updated_at = $4, \
             failing_since = CASE WHEN $5 = 1 THEN NULL ELSE failing_since END, \
             disabled_at = CASE WHEN $5 = 1 THEN NULL ELSE disabled_at END, \
             disabled_reason = CASE WHEN $5 = 1 THEN NULL ELSE disabled_reason END \
             WHERE id = $6",
        )
        .bind(changes.url.clone().unwrap_or_else(|| before.url.clone()))
        .bind(
            changes
                .description
                .clone()
                .unwrap_or_else(|| before.description.clone()),
        )
        .bind(i64::from(changes.enabled.unwrap_or(before.enabled)))
        .bind(now.as_millis())
        .bind(i64::from(enabling))
        .bind(id_bytes(id.to_bytes()))
        .execute(mutation.connection())
        .await?;
        if let Some(events) = &changes.events {
            write_subscriptions(mutation.connection(), id, events).await?;
        }
        let after = load_endpoint(mutation.connection(), Some(org), id).await?;
        let details = json!({ "before": endpoint_json(&before), "after": endpoint_json(&after) });
        mutation
            .audit(
                &self.sealer,
                webhook_note(AuditAction::WebhookUpdated, details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await?;
        Ok(after)
    }

    async fn rotate_webhook_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        salt: [u8; 32],
        previous_until: Timestamp,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError> {
        let mut mutation = OrgMutation::begin_for(self, org, context, now).await?;
        let before = load_endpoint(mutation.connection(), Some(org), id).await?;
        // The secret replaced now becomes the previous one; those it follows keep signing
        // while their time lasts.
        let mut earlier: Vec<_> = before
            .previous
            .into_iter()
            .filter(|(_, until)| *until > now)
            .collect();
        earlier.truncate(MAX_PREVIOUS_SECRETS - 1);
        sqlx::query(
            "UPDATE webhook_endpoints SET previous_salt = secret_salt, previous_until = $1, \
             earlier_secrets = $2, secret_salt = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(previous_until.as_millis())
        .bind(earlier_secrets_column(&earlier))
        .bind(salt.to_vec())
        .bind(now.as_millis())
        .bind(id_bytes(id.to_bytes()))
        .execute(mutation.connection())
        .await?;
        let record = load_endpoint(mutation.connection(), Some(org), id).await?;
        let details = json!({ "webhook_id": id, "previous_until": previous_until.as_millis() });
        mutation
            .audit(
                &self.sealer,
                webhook_note(AuditAction::WebhookSecretRotated, details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await?;
        Ok(record)
    }

    async fn delete_webhook(
        &self,
        org: OrgId,
        id: WebhookId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut mutation = OrgMutation::begin_for(self, org, context, now).await?;
        let record = load_endpoint(mutation.connection(), Some(org), id).await?;
        for table in [
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_subscriptions",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE endpoint_id = $1"
            )))
            .bind(id_bytes(id.to_bytes()))
            .execute(mutation.connection())
            .await?;
        }
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id_bytes(id.to_bytes()))
            .execute(mutation.connection())
            .await?;
        let details = json!({ "webhook": endpoint_json(&record) });
        mutation
            .audit(
                &self.sealer,
                webhook_note(AuditAction::WebhookDeleted, details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await
    }

    async fn webhook_attempts(
        &self,
        org: OrgId,
        id: WebhookId,
        before: Option<(Timestamp, EventId, u32)>,
        limit: u32,
    ) -> Result<Page<AttemptRecord>, StoreError> {
        let (at, event, attempt) = before.unwrap_or((
            Timestamp(i64::MAX),
            EventId::from_bytes([0xff; 16]),
            u32::MAX,
        ));
        let mut connection = self.pool.acquire().await?;
        load_endpoint(&mut connection, Some(org), id).await?;
        let rows = sqlx::query(
            "SELECT a.event_id, ev.event_type, a.attempt, a.at, a.duration_ms, a.status, \
             a.outcome, a.response FROM webhook_attempts a \
             JOIN webhook_events ev ON ev.id = a.event_id \
             WHERE a.endpoint_id = $1 AND (a.at, a.event_id, a.attempt) < ($2, $3, $4) \
             ORDER BY a.at DESC, a.event_id DESC, a.attempt DESC LIMIT $5",
        )
        .bind(id_bytes(id.to_bytes()))
        .bind(at.as_millis())
        .bind(id_bytes(event.to_bytes()))
        .bind(i64::from(attempt))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *connection)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(AttemptRecord {
                event_id: EventId::from_bytes(bytes16(row.try_get("event_id")?)?),
                event_type: row.try_get("event_type")?,
                attempt: u32::try_from(row.try_get::<i64, _>("attempt")?)
                    .map_err(|_| StoreError::Corrupt("attempt number".into()))?,
                result: Attempt {
                    at: Timestamp(row.try_get("at")?),
                    duration_ms: u64_of(row.try_get("duration_ms")?)?,
                    status: row
                        .try_get::<Option<i64>, _>("status")?
                        .and_then(|status| u16::try_from(status).ok()),
                    outcome: row.try_get("outcome")?,
                    response: row.try_get("response")?,
                },
            });
        }
        Ok(Page::from_overfetch(items, limit))
    }

    async fn redeliver(
        &self,
        org: OrgId,
        id: WebhookId,
        event: EventId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut mutation = OrgMutation::begin_for(self, org, context, now).await?;
        outbox::redeliver(mutation.connection(), org, id, event, now).await?;
        mutation.commit(&self.heads).await
    }

    async fn announce_expiries(
        &self,
        now: Timestamp,
        default_days: &[u32],
        limit: u32,
    ) -> Result<Vec<crate::store::webhooks::ExpiryNotice>, StoreError> {
        super::expiry::announce(self, now, default_days, limit).await
    }

    async fn expiry_notice_days(
        &self,
        org: OrgId,
    ) -> Result<Option<crate::store::webhooks::ExpiryNoticeDays>, StoreError> {
        super::expiry_settings::get(&self.pool, org).await
    }

    async fn put_expiry_notice_days(
        &self,
        org: OrgId,
        days_before: &[u32],
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<crate::store::webhooks::ExpiryNoticeDays, StoreError> {
        super::expiry_settings::put(self, org, days_before, context, now).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        outbox::claim(&self.pool, self.backend(), now, lease_until, limit).await
    }

    async fn delete_webhook_history(
        &self,
        before: Timestamp,
        notices_before: Timestamp,
    ) -> Result<WebhookHistorySwept, StoreError> {
        outbox::delete_history(&self.pool, before, notices_before).await
    }

    async fn record_attempts(
        &self,
        attempts: &[(ClaimedDelivery, Attempt, NextStep)],
        streak: FailureStreak,
    ) -> Result<Vec<bool>, StoreError> {
        // One transaction for the attempts that ended together (a commit per attempt was what
        // bounded the worker), taking the endpoints' rows in one order (by id): instances
        // record their attempts at the same time, and two transactions locking two endpoints
        // in opposite orders would deadlock on PostgreSQL.
        let mut order: Vec<usize> = (0..attempts.len()).collect();
        order.sort_by_key(|&at| {
            let delivery = &attempts[at].0;
            (
                delivery.endpoint.id.to_bytes(),
                delivery.event_id.to_bytes(),
            )
        });
        let mut mutation = Mutation::begin(&self.pool).await?;
        let mut streaks = vec![(Timestamp(0), None); attempts.len()];
        for at in order {
            let (delivery, attempt, next) = &attempts[at];
            let failing_since = outbox::record_attempt(
                mutation.connection(),
                delivery,
                attempt.clone(),
                *next,
                streak.idle_gap_ms,
            )
            .await?;
            streaks[at] = (attempt.at, failing_since);
        }
        mutation.commit(&self.heads).await?;
        let mut disabled = Vec::with_capacity(attempts.len());
        for ((delivery, _, _), (now, failing_since)) in attempts.iter().zip(streaks) {
            disabled.push(match failing_since {
                Some(since) if now.as_millis() - since.as_millis() >= streak.disable_after_ms => {
                    // The attempts are recorded: a failure here must not report them as not
                    // (they would be recorded again, and refused). The streak stays, so the
                    // endpoint's next failure disables it.
                    match disable(self, &delivery.endpoint, since, now).await {
                        Ok(now) => now,
                        Err(error) => {
                            tracing::warn!(%error, endpoint = %delivery.endpoint.id, "disabling a failing webhook endpoint failed; tried again at its next failure");
                            false
                        }
                    }
                }
                _ => false,
            });
        }
        Ok(disabled)
    }
}

/// Disables an endpoint failing since `since` (once, if it is still enabled), audited as
/// `webhook_disabled`, and announces it to the organization's other endpoints with a
/// `webhook.disabled` event; whether it was disabled now.
async fn disable(
    store: &SqlStore,
    endpoint: &WebhookRecord,
    since: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let org = endpoint.org_id;
    let mut mutation = OrgMutation::begin(store, org).await?;
    let reason = format!("every delivery failed since {}", rfc3339(since));
    let disabled = sqlx::query(
        "UPDATE webhook_endpoints SET enabled = 0, disabled_at = $1, disabled_reason = $2, \
         updated_at = $1 WHERE id = $3 AND enabled = 1",
    )
    .bind(now.as_millis())
    .bind(reason.clone())
    .bind(id_bytes(endpoint.id.to_bytes()))
    .execute(mutation.connection())
    .await?
    .rows_affected();
    if disabled == 0 {
        return Ok(false);
    }
    let context = AuditContext {
        user_agent: Some("keyplane webhook delivery".into()),
        request_id: "webhook-delivery".into(),
        ..AuditContext::default()
    };
    let details = json!({
        "webhook_id": endpoint.id,
        "url": endpoint.url,
        "reason": reason,
        "failing_since": since.as_millis(),
    });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::WebhookDisabled, None, details),
            &context,
            now,
        )
        .await?;
    let event = NewEvent::new(
        org,
        EventType::WebhookDisabled,
        disabled_data(org, &endpoint.id.to_string(), &endpoint.url, since),
        now,
    )?;
    outbox::enqueue(mutation.connection(), &event, now).await?;
    mutation.commit(&store.heads).await?;
    Ok(true)
}
