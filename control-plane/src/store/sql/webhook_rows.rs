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
use crate::store::webhooks::{SALT_LEN, WebhookRecord};

pub(super) const ENDPOINT_COLUMNS: &str = "id, org_id, url, description, enabled, secret_salt, \
     previous_salt, previous_until, earlier_secrets, failing_since, disabled_at, \
     disabled_reason, created_at, updated_at";

/// One secret in `earlier_secrets`: its salt, then when it stops signing (unix milliseconds,
/// big-endian).
const EARLIER_SECRET_LEN: usize = SALT_LEN + 8;

/// `earlier_secrets` holding `secrets` (newest first); `None` for none.
pub(super) fn earlier_secrets_column(secrets: &[([u8; SALT_LEN], Timestamp)]) -> Option<Vec<u8>> {
    if secrets.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(secrets.len() * EARLIER_SECRET_LEN);
    for (salt, until) in secrets {
        bytes.extend_from_slice(salt);
        bytes.extend_from_slice(&until.as_millis().to_be_bytes());
    }
    Some(bytes)
}

/// The secrets an `earlier_secrets` column holds, newest first.
fn earlier_secrets(bytes: Option<Vec<u8>>) -> Result<Vec<([u8; SALT_LEN], Timestamp)>, StoreError> {
    let bytes = bytes.unwrap_or_default();
    if !bytes.len().is_multiple_of(EARLIER_SECRET_LEN) {
        return Err(StoreError::Corrupt("earlier webhook secrets".into()));
    }
    Ok(bytes
        .chunks_exact(EARLIER_SECRET_LEN)
        .map(|entry| {
            let (salt, until) = entry.split_at(SALT_LEN);
            let mut salt_bytes = [0; SALT_LEN];
            salt_bytes.copy_from_slice(salt);
            let mut until_bytes = [0; 8];
            until_bytes.copy_from_slice(until);
            (salt_bytes, Timestamp(i64::from_be_bytes(until_bytes)))
        })
        .collect())
}

/// Reads an endpoint row (its events read separately).
pub(super) fn endpoint_from_row(
    row: &AnyRow,
    events: Vec<EventType>,
) -> Result<WebhookRecord, StoreError> {
    let mut previous = match (
        row.try_get::<Option<Vec<u8>>, _>("previous_salt")?,
        optional_time(row, "previous_until")?,
    ) {
        (Some(salt), Some(until)) => vec![(bytes32(salt)?, until)],
        _ => Vec::new(),
    };
    previous.extend(earlier_secrets(row.try_get("earlier_secrets")?)?);
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
