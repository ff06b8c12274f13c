//! Reading webhook endpoint rows, with the event types each wants: shared by the endpoints'
//! SQL (`webhooks.rs`) and the outbox's (`outbox.rs`).

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, WebhookId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::people::id_bytes;
use super::rows::{bytes16, bytes32, optional_time};
use crate::store::StoreError;
use crate::store::outbox::EventType;
use crate::store::webhooks::WebhookRecord;

pub(super) const ENDPOINT_COLUMNS: &str = "id, org_id, url, description, enabled, secret_salt, \
     previous_salt, previous_until, failing_since, disabled_at, disabled_reason, created_at, \
     updated_at";

/// Reads an endpoint row (its events read separately).
pub(super) fn endpoint_from_row(
    row: &AnyRow,
    events: Vec<EventType>,
) -> Result<WebhookRecord, StoreError> {
    let previous = match (
        row.try_get::<Option<Vec<u8>>, _>("previous_salt")?,
        optional_time(row, "previous_until")?,
    ) {
        (Some(salt), Some(until)) => Some((bytes32(salt)?, until)),
        _ => None,
    };
    let disabled = match (
        optional_time(row, "disabled_at")?,
        row.try_get::<Option<String>, _>("disabled_reason")?,
    ) {
        (Some(at), Some(reason)) => Some((at, reason)),
        _ => None,
    };
    Ok(WebhookRecord {
        id: WebhookId::from_bytes(bytes16(row.try_get("id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        salt: bytes32(row.try_get("secret_salt")?)?,
        previous,
        failing_since: optional_time(row, "failing_since")?,
        disabled,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// The event types endpoint `id` wants, in the documented order.
pub(super) async fn subscriptions(
    connection: &mut AnyConnection,
    id: WebhookId,
) -> Result<Vec<EventType>, StoreError> {
    let rows = sqlx::query("SELECT event_type FROM webhook_subscriptions WHERE endpoint_id = $1")
        .bind(id_bytes(id.to_bytes()))
        .fetch_all(&mut *connection)
        .await?;
    let mut names = Vec::with_capacity(rows.len());
    for row in rows {
        names.push(row.try_get::<String, _>(0)?);
    }
    Ok(EventType::ALL
        .into_iter()
        .filter(|kind| names.iter().any(|name| name == kind.as_str()))
        .collect())
}

/// Endpoint `id` of `org`, with its events; `NotFound` for another organization's.
pub(super) async fn load_endpoint(
    connection: &mut AnyConnection,
    org: Option<OrgId>,
    id: WebhookId,
) -> Result<WebhookRecord, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
    )))
    .bind(id_bytes(id.to_bytes()))
    .fetch_optional(&mut *connection)
    .await?
    .ok_or(StoreError::NotFound)?;
    let events = subscriptions(connection, id).await?;
    let record = endpoint_from_row(&row, events)?;
    match org {
        Some(org) if org != record.org_id => Err(StoreError::NotFound),
        _ => Ok(record),
    }
}
