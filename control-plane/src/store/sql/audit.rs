//! The audit log's rows: reading it (a filtered page, the chain head, a run of the chain in
//! order) and writing refused management calls. Records of key changes are appended by the
//! mutations themselves ([`super::keys`]), through [`super::journal::append_audit`].

use keyplane_shared::Timestamp;
use keyplane_shared::ids::OrgId;
use sqlx::Row as _;

use super::SqlStore;
use super::filtered::{Filtered, Param};
use super::journal::OrgMutation;
use super::rows::{AUDIT_COLUMNS, audit_from_row, bytes32, i64_of, u64_of};
use crate::store::StoreError;
use crate::store::lifecycle::AuditNote;
use crate::store::records::{AuditAction, AuditFilter, AuditRecord, FailedAuth, Page};

/// Records refused management calls, in order, in one transaction.
pub(super) async fn record_failed_auths(
    store: &SqlStore,
    org: OrgId,
    records: &[FailedAuth],
    now: Timestamp,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut mutation = OrgMutation::begin(store, org).await?;
    for record in records {
        let note = AuditNote {
            action: AuditAction::AuthFailed,
            target: record.context.actor,
            target_user: None,
            details: record.details.clone(),
        };
        mutation
            .audit(&store.sealer, note, &record.context, now)
            .await?;
    }
    mutation.commit(&store.heads).await
}

/// A page of an organization's audit records, newest first.
pub(super) async fn list(
    store: &SqlStore,
    org: OrgId,
    filter: &AuditFilter,
) -> Result<Page<AuditRecord>, StoreError> {
    let mut query = Filtered::new("org_id", Param::Bytes(org.to_bytes().to_vec()));
    if let Some(action) = filter.action {
        let action = query.bind(Param::Text(action.as_str().to_owned()));
        query.condition(&format!("action = {action}"));
    }
    if let Some(target) = filter.target {
        let target = query.bind(Param::Bytes(target.to_bytes().to_vec()));
        query.condition(&format!("target_key_id = {target}"));
    }
    if let Some(before) = filter.before_seq {
        let before = query.bind(Param::Int(i64_of(before)?));
        query.condition(&format!("seq < {before}"));
    }
    if let Some(since) = filter.since {
        let since = query.bind(Param::Int(since.as_millis()));
        query.condition(&format!("at >= {since}"));
    }
    if let Some(until) = filter.until {
        let until = query.bind(Param::Int(until.as_millis()));
        query.condition(&format!("at < {until}"));
    }
    let limit = query.bind(Param::Int(i64::from(filter.limit) + 1));
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {} ORDER BY seq DESC LIMIT {limit}",
        query.conditions()
    );
    let rows = query.fetch_all(&sql, &store.pool).await?;
    let items = rows
        .iter()
        .map(audit_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, filter.limit))
}

/// The chain head the organization row holds.
pub(super) async fn head(store: &SqlStore, org: OrgId) -> Result<(u64, [u8; 32]), StoreError> {
    let head = sqlx::query("SELECT audit_seq, audit_head FROM orgs WHERE id = $1")
        .bind(org.to_bytes().to_vec())
        .fetch_optional(&store.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((
        u64_of(head.try_get::<i64, _>(0)?)?,
        bytes32(head.try_get::<Vec<u8>, _>(1)?)?,
    ))
}

/// Up to `limit` records with a sequence number above `after`, in chain order.
pub(super) async fn page(
    store: &SqlStore,
    org: OrgId,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_bytes().to_vec())
        .bind(i64_of(after)?)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
}
