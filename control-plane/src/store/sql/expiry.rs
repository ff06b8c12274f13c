//! Expiry notices: keys whose expiry is near (`key.expiring`, at each lead time) or has just
//! passed (`key.expired`), each announced once. A notice row and its event are written in one
//! transaction, the row first with `ON CONFLICT DO NOTHING`: when several instances find the
//! same key, one inserts the row and announces, the others insert nothing and announce nothing.
//! Each organization's lead times are its own ([`super::expiry_settings`]) or the defaults.
//! A key that was rotated is not announced (its end, the grace period's, is the rotation's
//! doing, and its successor carries the reminders), nor one revoked, deleted or given another
//! expiry between the look and its notice (checked again under the organization's lock).

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId};
use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::expiry_settings;
use super::journal::OrgMutation;
use super::outbox;
use super::people::id_bytes;
use super::rows::bytes16;
use crate::store::StoreError;
use crate::store::outbox::{EventType, NewEvent};
use crate::store::webhooks::{EXPIRED_NOTICE, EXPIRING_NOTICE_PREFIX, ExpiryNotice};
use crate::timestamps::rfc3339;

/// How far back a passed expiry is still announced: keys that expired earlier (before the
/// scheduler ran, or while no instance did) are passed over.
pub const EXPIRED_WINDOW_MS: i64 = DAY_MS;

const DAY_MS: i64 = 86_400_000;

/// What a key (`k`) must be for its expiry to be announced: neither revoked, deleted nor
/// rotated (a rotated key's end is its grace period's, and its successor carries the
/// reminders). Looked for by [`due_keys`], checked again by [`still_due`].
const ANNOUNCEABLE: &str = "k.revoked_at IS NULL AND k.deleted_at IS NULL AND k.rotated_to IS NULL";

/// A key whose notice is due.
struct Due {
    id: KeyId,
    org: OrgId,
    name: String,
    environment: String,
    truncated: String,
    expires_at: Timestamp,
    owner_email: Option<String>,
}

/// The notice label of a lead time.
fn expiring_label(lead_ms: i64) -> String {
    format!("{EXPIRING_NOTICE_PREFIX}{}", lead_ms / 1000)
}

/// Which organizations' keys a `key.expiring` lookup is for: those that chose `day`, and, when
/// `day` is a default, those that chose nothing.
struct WantedBy {
    day: u32,
    by_default: bool,
}

/// Keys expiring in `(from, until]` without the notice `notice`, nor any of `shorter` (a key
/// told it expires within a day is not told later that it does within a month, when an
/// organization adds a longer lead time), for the organizations `wanted_by` names.
async fn due_keys(
    connection: &mut AnyConnection,
    from: Timestamp,
    until: Timestamp,
    notice: &str,
    wanted_by: Option<WantedBy>,
    shorter: &[String],
    limit: u32,
) -> Result<Vec<Due>, StoreError> {
    let organizations = if wanted_by.is_some() {
        "AND ((x.days_before IS NULL AND $5 = 1) OR x.days_before LIKE $6) "
    } else {
        ""
    };
    let first = if wanted_by.is_some() { 7 } else { 5 };
    let placeholders: Vec<String> = (0..shorter.len())
        .map(|index| format!("${}", first + index))
        .collect();
    let sooner = if shorter.is_empty() {
        String::new()
    } else {
        format!(
            "AND NOT EXISTS (SELECT 1 FROM key_notices s WHERE s.key_id = k.id AND s.notice IN ({})) ",
            placeholders.join(", ")
        )
    };
    // Constant fragments only: every value is bound.
    let sql = format!(
        "SELECT k.id, k.org_id, k.name, k.environment, k.truncated, k.expires_at, \
         u.email AS owner_email \
         FROM api_keys k LEFT JOIN users u ON u.id = k.owner_id \
         LEFT JOIN org_expiry_notices x ON x.org_id = k.org_id \
         WHERE k.expires_at > $1 AND k.expires_at <= $2 \
         AND {ANNOUNCEABLE} AND NOT EXISTS ( \
           SELECT 1 FROM key_notices n WHERE n.key_id = k.id AND n.notice = $3) \
         {organizations}{sooner}ORDER BY k.expires_at LIMIT $4"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from.as_millis())
        .bind(until.as_millis())
        .bind(notice.to_owned())
        .bind(i64::from(limit));
    if let Some(wanted_by) = wanted_by {
        query = query
            .bind(i64::from(wanted_by.by_default))
            .bind(expiry_settings::pattern(wanted_by.day));
    }
    for label in shorter {
        query = query.bind(label.clone());
    }
    let rows = query.fetch_all(&mut *connection).await?;
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        due.push(Due {
            id: KeyId::from_bytes(bytes16(row.try_get("id")?)?),
            org: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
            name: row.try_get("name")?,
            environment: row.try_get("environment")?,
            truncated: row.try_get("truncated")?,
            expires_at: Timestamp(row.try_get("expires_at")?),
            owner_email: row.try_get("owner_email")?,
        });
    }
    Ok(due)
}

/// Inserts the notice row unless it exists; whether this call inserted it.
async fn claim_notice(
    connection: &mut AnyConnection,
    key: KeyId,
    notice: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO key_notices (key_id, notice, sent_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id_bytes(key.to_bytes()))
    .bind(notice.to_owned())
    .bind(now.as_millis())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Announces the due notices, at most `limit` keys per kind: the shortest lead first, so a
/// key already within a day of its expiry gets the one-day notice alone (its longer ones are
/// marked as passed over). Each organization's own lead times apply, `default_days` where it
/// chose none. The notices this call announced.
pub(super) async fn announce(
    store: &SqlStore,
    now: Timestamp,
    default_days: &[u32],
    limit: u32,
) -> Result<Vec<ExpiryNotice>, StoreError> {
    let days: Vec<u32> = expiry_settings::all_days(&store.pool, default_days)
        .await?
        .into_iter()
        .collect();
    let mut announced = Vec::new();
    // Passed: within the window.
    let mut connection = store.pool.acquire().await?;
    let expired = due_keys(
        &mut connection,
        Timestamp(now.as_millis() - EXPIRED_WINDOW_MS),
        now,
        EXPIRED_NOTICE,
        None,
        &[],
        limit,
    )
    .await?;
    drop(connection);
    for key in expired {
        if notified(
            notify(
                store,
                &key,
                EXPIRED_NOTICE,
                &[],
                EventType::KeyExpired,
                None,
                now,
            )
            .await,
            &key,
        ) {
            announced.push(notice_of(key, None));
        }
    }
    // Shortest first: a notice's shorter ones come before it, its longer ones after.
    let labels: Vec<String> = days
        .iter()
        .map(|day| expiring_label(i64::from(*day) * DAY_MS))
        .collect();
    for (index, day) in days.iter().enumerate() {
        let lead = i64::from(*day) * DAY_MS;
        let (shorter, label, longer) = (&labels[..index], &labels[index], &labels[index + 1..]);
        let mut connection = store.pool.acquire().await?;
        let due = due_keys(
            &mut connection,
            now,
            Timestamp(now.as_millis() + lead),
            label,
            Some(WantedBy {
                day: *day,
                by_default: default_days.contains(day),
            }),
            shorter,
            limit,
        )
        .await?;
        drop(connection);
        for key in due {
            if notified(
                notify(
                    store,
                    &key,
                    label,
                    longer,
                    EventType::KeyExpiring,
                    Some(lead),
                    now,
                )
                .await,
                &key,
            ) {
                announced.push(notice_of(key, Some(lead)));
            }
        }
    }
    Ok(announced)
}

/// Whether [`notify`] announced `key`'s notice. A failure (its organization's row held past the
/// lock timeout, the database down) is logged and the key passed over: its notice was not
/// claimed, so the next look tries it again, and the keys after it, of other organizations
/// too, are still announced (and the ones announced already still emailed).
fn notified(outcome: Result<bool, StoreError>, key: &Due) -> bool {
    outcome.unwrap_or_else(|error| {
        tracing::warn!(%error, key_id = %key.id, "an expiry notice could not be written; trying again at the next look");
        false
    })
}

/// Whether `key` is still as [`due_keys`] found it: neither revoked, deleted nor rotated, and
/// with the same expiry.
async fn still_due(connection: &mut AnyConnection, key: &Due) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT 1 FROM api_keys k WHERE k.id = $1 AND k.expires_at = $2 AND {ANNOUNCEABLE}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key.id.to_bytes().to_vec())
        .bind(key.expires_at.as_millis())
        .fetch_optional(connection)
        .await?;
    Ok(row.is_some())
}

fn notice_of(key: Due, lead_ms: Option<i64>) -> ExpiryNotice {
    ExpiryNotice {
        key_id: key.id,
        name: key.name,
        truncated: key.truncated,
        expires_at: key.expires_at,
        lead_ms,
        owner_email: key.owner_email,
    }
}

/// One notice in one transaction: its row (and the passed-over ones), then its event; whether
/// this call announced it.
async fn notify(
    store: &SqlStore,
    key: &Due,
    notice: &str,
    passed_over: &[String],
    kind: EventType,
    lead_ms: Option<i64>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    // Under the organization's lock, so no revocation, rotation or new expiry of the key can
    // commit between the look above and this notice: the key must still be as it was found.
    let mut mutation = OrgMutation::begin(store, key.org).await?;
    if !still_due(mutation.connection(), key).await?
        || !claim_notice(mutation.connection(), key.id, notice, now).await?
    {
        return Ok(false);
    }
    for other in passed_over {
        claim_notice(mutation.connection(), key.id, other, now).await?;
    }
    let mut data = json!({
        "organization_id": key.org,
        "key_id": key.id,
        "key": {
            "id": key.id,
            "name": key.name,
            "environment": key.environment,
            "truncated": key.truncated,
        },
        "expires_at": rfc3339(key.expires_at),
    });
    if let Some(lead) = lead_ms {
        data["notice_seconds_before"] = json!(lead / 1000);
    }
    let event = NewEvent::new(key.org, kind, data, now)?;
    outbox::enqueue(mutation.connection(), &event, now).await?;
    mutation.commit(&store.heads).await?;
    Ok(true)
}
