//! Key rows: reading one key, and every mutation of keys (and of the organization created with
//! its first key). Each mutation is one [`Mutation`]: lock the organization, load the key, ask
//! [`lifecycle`] what the change makes of it, save that with its change for the edges, append
//! the audit note, commit.

use keyplane_shared::ids::{KeyId, OrgId};
use keyplane_shared::{ChangeOp, LookupDigest, RateLimit, Timestamp};
use serde_json::Value;
use sqlx::AnyConnection;

use super::SqlStore;
use super::journal::{Mutation, OrgMutation};
use super::rows::{KEY_COLUMNS, key_from_row};
use crate::store::StoreError;
use crate::store::audit_chain::GENESIS;
use crate::store::lifecycle::{self, RevokePlan};
use crate::store::records::{
    AuditContext, KeyChanges, KeyRecord, NewKey, NewOrg, OrgRecord, Revocation, RevokeOutcome,
    Rotation,
};
use crate::store::webhooks::EXPIRING_NOTICE_PREFIX;

/// Reads one key of `org`, deleted or not.
pub(super) async fn load_key(
    connection: &mut AnyConnection,
    org: OrgId,
    id: KeyId,
) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_bytes().to_vec())
        .bind(id.to_bytes().to_vec())
        .fetch_optional(&mut *connection)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
}

/// The key `context`'s caller may act on, read in the mutation ([`lifecycle::reach`]).
async fn reachable(
    mutation: &mut OrgMutation,
    org: OrgId,
    id: KeyId,
    context: &AuditContext,
) -> Result<KeyRecord, StoreError> {
    lifecycle::reach(load_key(mutation.connection(), org, id).await?, context)
}

/// The key with this lookup digest, in any organization and state.
pub(super) async fn by_digest(
    store: &SqlStore,
    digest: &LookupDigest,
) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(digest.as_bytes().to_vec())
        .fetch_optional(&store.pool)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
}

/// Inserts a key and logs it for the edges.
async fn insert_key(
    mutation: &mut Mutation,
    key: &NewKey,
    rotated_from: Option<KeyId>,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let (rpm, burst) = rate_limit_columns(key.rate_limit);
    let sql = format!(
        "INSERT INTO api_keys (id, org_id, name, environment, truncated, digest, pepper_id, \
         secret_hash, scopes, rate_limit_rpm, rate_limit_burst, metadata, created_at, created_by, \
         updated_at, expires_at, rotated_from, owner_id, created_by_user) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13, $15, $16, \
         $17, $18) \
         RETURNING {KEY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key.id.to_bytes().to_vec())
        .bind(key.org_id.to_bytes().to_vec())
        .bind(key.name.clone())
        .bind(key.environment.as_str())
        .bind(key.truncated.clone())
        .bind(key.digest.as_bytes().to_vec())
        .bind(i64::from(key.pepper_id.0))
        .bind(key.secret_hash.clone())
        .bind(key.scopes.to_string())
        .bind(rpm)
        .bind(burst)
        .bind(Value::Object(key.metadata.clone()).to_string())
        .bind(now.as_millis())
        .bind(key.created_by.map(|id| id.to_bytes().to_vec()))
        .bind(key.expires_at.map(Timestamp::as_millis))
        .bind(rotated_from.map(|id| id.to_bytes().to_vec()))
        .bind(key.owner_id.map(|id| id.to_bytes().to_vec()))
        .bind(key.created_by_user.map(|id| id.to_bytes().to_vec()))
        .fetch_one(mutation.connection())
        .await?;
    let record = key_from_row(&row)?;
    let op = ChangeOp::Upsert(record.table_entry());
    mutation.append_change(record.org_id, op, now).await?;
    Ok(record)
}

/// Writes every mutable column of `key` back and logs the change for the edges.
pub(super) async fn save_key(
    mutation: &mut Mutation,
    key: &KeyRecord,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let (rpm, burst) = rate_limit_columns(key.rate_limit);
    let sql = format!(
        "UPDATE api_keys SET name = $1, scopes = $2, rate_limit_rpm = $3, rate_limit_burst = $4, \
         metadata = $5, updated_at = $6, expires_at = $7, revoked_at = $8, \
         revocation_reason = $9, revocation_note = $10, rotated_to = $11, deleted_at = $12, \
         owner_id = $15 WHERE org_id = $13 AND id = $14 RETURNING {KEY_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key.name.clone())
        .bind(key.scopes.to_string())
        .bind(rpm)
        .bind(burst)
        .bind(Value::Object(key.metadata.clone()).to_string())
        .bind(now.as_millis())
        .bind(key.expires_at.map(Timestamp::as_millis))
        .bind(key.revoked_at.map(Timestamp::as_millis))
        .bind(key.revocation.as_ref().map(|r| r.reason.as_str()))
        .bind(key.revocation.as_ref().and_then(|r| r.note.clone()))
        .bind(key.rotated_to.map(|id| id.to_bytes().to_vec()))
        .bind(key.deleted_at.map(Timestamp::as_millis))
        .bind(key.org_id.to_bytes().to_vec())
        .bind(key.id.to_bytes().to_vec())
        .bind(key.owner_id.map(|id| id.to_bytes().to_vec()))
        .fetch_one(mutation.connection())
        .await?;
    let saved = key_from_row(&row)?;
    let op = if saved.deleted_at.is_some() {
        ChangeOp::Remove(saved.digest)
    } else {
        ChangeOp::Upsert(saved.table_entry())
    };
    mutation.append_change(saved.org_id, op, now).await?;
    Ok(saved)
}

/// Creates an organization with its first admin key.
pub(super) async fn create_org(
    store: &SqlStore,
    org: NewOrg,
    admin: NewKey,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(OrgRecord, KeyRecord), StoreError> {
    let mut mutation = Mutation::begin(&store.pool).await?;
    sqlx::query(
        "INSERT INTO orgs (id, name, created_at, audit_seq, audit_head) \
         VALUES ($1, $2, $3, 0, $4)",
    )
    .bind(org.id.to_bytes().to_vec())
    .bind(org.name.clone())
    .bind(now.as_millis())
    .bind(GENESIS.to_vec())
    .execute(mutation.connection())
    .await?;
    // The first organization made this way is the operators' (see `PeopleStore::first_org`).
    sqlx::query(
        "INSERT INTO deployment (id, operator_org) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
    )
    .bind(org.id.to_bytes().to_vec())
    .execute(mutation.connection())
    .await?;
    let mut mutation = OrgMutation::lock_new(store, mutation, org.id).await?;
    let key = insert_key(&mut mutation, &admin, None, now).await?;
    let note = lifecycle::organization_creation(&org.name, &key);
    mutation.audit(&store.sealer, note, context, now).await?;
    mutation.commit(&store.heads).await?;
    let record = OrgRecord {
        id: org.id,
        name: org.name,
        created_at: now,
    };
    Ok((record, key))
}

/// Stores a new key.
pub(super) async fn create(
    store: &SqlStore,
    key: NewKey,
    context: &AuditContext,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, key.org_id, context, now).await?;
    let record = insert_key(&mut mutation, &key, None, now).await?;
    let note = lifecycle::creation(&record);
    mutation.audit(&store.sealer, note, context, now).await?;
    mutation.commit(&store.heads).await?;
    Ok(record)
}

/// Changes a key in place.
pub(super) async fn update(
    store: &SqlStore,
    org: OrgId,
    id: KeyId,
    changes: KeyChanges,
    context: &AuditContext,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let before = reachable(&mut mutation, org, id, context).await?;
    let edit = lifecycle::edit(&before, changes, now).map_err(StoreError::Conflict)?;
    let saved = save_key(&mut mutation, &edit.key, now).await?;
    if saved.expires_at != before.expires_at {
        // A new expiry gets its own reminders: those sent for the old one are forgotten.
        forget_expiring_notices(&mut mutation, id).await?;
    }
    mutation
        .audit(&store.sealer, edit.audit, context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(saved)
}

/// Forgets which `key.expiring` notices (`store::sql::expiry`, rows named
/// [`EXPIRING_NOTICE_PREFIX`]`<lead>`) `key` was sent, so that a changed
/// expiry is announced at each lead time again (a key extended after its one-day reminder gets
/// reminders before its new expiry too).
async fn forget_expiring_notices(mutation: &mut OrgMutation, key: KeyId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM key_notices WHERE key_id = $1 AND notice LIKE $2")
        .bind(key.to_bytes().to_vec())
        .bind(format!("{EXPIRING_NOTICE_PREFIX}%"))
        .execute(mutation.connection())
        .await?;
    Ok(())
}

/// Replaces a key by a new one with the same settings; returns (old, new).
pub(super) async fn rotate(
    store: &SqlStore,
    org: OrgId,
    id: KeyId,
    rotation: Rotation,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(KeyRecord, KeyRecord), StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let old = reachable(&mut mutation, org, id, context).await?;
    let plan = lifecycle::rotate(&old, rotation, now).map_err(StoreError::Conflict)?;
    let new = insert_key(&mut mutation, &plan.successor, Some(old.id), now).await?;
    let old = save_key(&mut mutation, &plan.retired, now).await?;
    let note = lifecycle::rotation_audit(&old, &new, plan.grace_millis);
    mutation.audit(&store.sealer, note, context, now).await?;
    mutation.commit(&store.heads).await?;
    Ok((old, new))
}

/// Revokes a key; revoking a revoked key changes nothing and says so.
pub(super) async fn revoke(
    store: &SqlStore,
    org: OrgId,
    id: KeyId,
    revocation: Revocation,
    context: &AuditContext,
    now: Timestamp,
) -> Result<RevokeOutcome, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let key = reachable(&mut mutation, org, id, context).await?;
    let (outcome, note) = match lifecycle::revoke(key, revocation, now) {
        RevokePlan::AlreadyRevoked { key, audit } => (RevokeOutcome::AlreadyRevoked(key), audit),
        RevokePlan::Revoke(revocation) => {
            let saved = save_key(&mut mutation, &revocation.key, now).await?;
            (RevokeOutcome::Revoked(saved), revocation.audit)
        }
    };
    mutation.audit(&store.sealer, note, context, now).await?;
    mutation.commit(&store.heads).await?;
    Ok(outcome)
}

/// Hides a revoked or expired key from listings.
pub(super) async fn delete(
    store: &SqlStore,
    org: OrgId,
    id: KeyId,
    context: &AuditContext,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let key = reachable(&mut mutation, org, id, context).await?;
    let deletion = lifecycle::delete(&key, now).map_err(StoreError::Conflict)?;
    let saved = save_key(&mut mutation, &deletion.key, now).await?;
    mutation
        .audit(&store.sealer, deletion.audit, context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(saved)
}

fn rate_limit_columns(limit: Option<RateLimit>) -> (Option<i64>, Option<i64>) {
    match limit {
        Some(limit) => (
            Some(i64::from(limit.requests_per_minute())),
            Some(i64::from(limit.burst())),
        ),
        None => (None, None),
    }
}
