//! Each organization's expiry notice lead times (`org_expiry_notices`): read, set with an
//! upsert audited in the organization's chain, and matched by the scheduler
//! ([`super::expiry`]) with `LIKE` on the stored form, a comma on each side of every value.

use std::collections::BTreeSet;

use keyplane_shared::Timestamp;
use keyplane_shared::ids::OrgId;
use serde_json::json;
use sqlx::{AnyPool, Row as _};

use super::SqlStore;
use super::journal::OrgMutation;
use super::members::note;
use super::people::id_bytes;
use crate::store::StoreError;
use crate::store::records::{AuditAction, AuditContext};
use crate::store::webhooks::ExpiryNoticeDays;

/// The stored form: `,30,7,1,` (`,` for none).
pub(super) fn stored(days_before: &[u32]) -> String {
    let mut text = String::from(",");
    for day in days_before {
        text.push_str(&day.to_string());
        text.push(',');
    }
    text
}

/// The pattern matching a stored list that holds `day`.
pub(super) fn pattern(day: u32) -> String {
    format!("%,{day},%")
}

/// Reads the stored form (values that do not parse are left out: the API stores only numbers).
fn parsed(text: &str) -> Vec<u32> {
    text.split(',')
        .filter_map(|part| part.parse().ok())
        .collect()
}

pub(super) async fn get(
    pool: &AnyPool,
    org: OrgId,
) -> Result<Option<ExpiryNoticeDays>, StoreError> {
    let row =
        sqlx::query("SELECT days_before, updated_at FROM org_expiry_notices WHERE org_id = $1")
            .bind(id_bytes(org.to_bytes()))
            .fetch_optional(pool)
            .await?;
    row.map(|row| {
        Ok(ExpiryNoticeDays {
            days_before: parsed(&row.try_get::<String, _>("days_before")?),
            updated_at: Timestamp(row.try_get("updated_at")?),
        })
    })
    .transpose()
}

/// Every lead time some organization set, with `defaults`: the ones the scheduler looks for.
pub(super) async fn all_days(
    pool: &AnyPool,
    defaults: &[u32],
) -> Result<BTreeSet<u32>, StoreError> {
    let rows = sqlx::query("SELECT DISTINCT days_before FROM org_expiry_notices")
        .fetch_all(pool)
        .await?;
    let mut days: BTreeSet<u32> = defaults.iter().copied().collect();
    for row in rows {
        days.extend(parsed(&row.try_get::<String, _>("days_before")?));
    }
    Ok(days)
}

pub(super) async fn put(
    store: &SqlStore,
    org: OrgId,
    days_before: &[u32],
    context: &AuditContext,
    now: Timestamp,
) -> Result<ExpiryNoticeDays, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    sqlx::query(
        "INSERT INTO org_expiry_notices (org_id, days_before, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id) DO UPDATE SET days_before = excluded.days_before, \
         updated_at = excluded.updated_at",
    )
    .bind(id_bytes(org.to_bytes()))
    .bind(stored(days_before))
    .bind(now.as_millis())
    .execute(mutation.connection())
    .await?;
    mutation
        .audit(
            &store.sealer,
            note(
                AuditAction::ExpiryNoticesUpdated,
                None,
                json!({ "days_before": days_before }),
            ),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(ExpiryNoticeDays {
        days_before: days_before.to_vec(),
        updated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_matches_each_value_and_no_other() {
        let text = stored(&[30, 7, 1]);
        assert_eq!(text, ",30,7,1,");
        assert_eq!(parsed(&text), vec![30, 7, 1]);
        assert_eq!(stored(&[]), ",");
        assert!(parsed(",").is_empty());
        // `LIKE '%,3,%'` must not match 30: the commas around each value see to it.
        for day in [1, 7, 30] {
            assert!(text.contains(&pattern(day).replace('%', "")));
        }
        for day in [3, 0, 70] {
            assert!(!text.contains(&pattern(day).replace('%', "")));
        }
    }
}
