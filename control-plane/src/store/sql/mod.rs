//! [`Store`] on SQLite or PostgreSQL, through sqlx's `Any` driver.
//!
//! The two backends share every query: both accept `$n` parameters, `RETURNING`, and the types
//! used here (integers, text, bytes). What differs lives in [`Backend`]: connection set-up
//! (SQLite gets WAL, a busy timeout and foreign keys) and the migrations, one folder per backend
//! under `control-plane/migrations/`, applied at start-up.
//!
//! Serialization: each mutation's first statement updates its organization's row (the audit
//! chain head). In PostgreSQL that takes the row lock; in SQLite the first write takes the
//! database's write lock. Either way, mutations of one organization run one at a time, and
//! each sees the effects of the one before it.

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use keyplane_shared::ids::{HistoryId, KeyId, OrgId};
use keyplane_shared::usage::UsageBatch;
use keyplane_shared::{Change, ChangeOp, FeedChain, LookupDigest, RateLimit, Timestamp};
use serde_json::{Value, json};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor as _, Row as _, Transaction};

mod filtered;
mod journal;
mod replication;
mod rows;
mod usage;

use self::filtered::{Filtered, Param};
use self::journal::{AuditEntry, append_audit, append_change, lock_org};
use self::rows::{
    AUDIT_COLUMNS, KEY_COLUMNS, audit_from_row, bytes32, i64_of, key_from_row, u64_of,
};
use super::records::*;
use super::{
    Conflict, DailyStatusCount, EdgeRecord, IngestReport, Registration, Store, StoreError,
    UsageFilter, UsageRecord,
};
use crate::audit::chain::{AuditSealer, GENESIS};

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend of a database URL, if supported.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The store on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    sealer: AuditSealer,
    history: HistoryId,
}

impl SqlStore {
    /// Connects, applies pending migrations and returns the store.
    pub async fn connect(url: &str, sealer: AuditSealer) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "unsupported database URL scheme in `{}` (use sqlite: or postgres:)",
                url.split(':').next().unwrap_or_default()
            ))
        })?;
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?
            }
        };
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&pool)
            .await
            .map_err(|error| StoreError::Corrupt(format!("applying migrations: {error}")))?;
        let history = replication::ensure_lineage(&pool).await?;
        Ok(SqlStore {
            pool,
            backend,
            sealer,
            history,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for tests and benchmarks that inspect the database).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

/// Reads one key of `org`, deleted or not.
async fn load_key(
    tx: &mut AnyConnection,
    org: OrgId,
    id: KeyId,
) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_bytes().to_vec())
        .bind(id.to_bytes().to_vec())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
}

/// Reads a key the caller may act on: present, not deleted, and holding no scope the caller
/// lacks.
async fn load_reachable_key(
    tx: &mut AnyConnection,
    org: OrgId,
    id: KeyId,
    context: &AuditContext,
) -> Result<KeyRecord, StoreError> {
    let key = load_key(tx, org, id)
        .await?
        .filter(|key| key.deleted_at.is_none())
        .ok_or(StoreError::NotFound)?;
    if !key.scopes.is_covered_by(&context.actor_scopes) {
        return Err(StoreError::OutOfReach);
    }
    Ok(key)
}

/// Reads a key that may still change: reachable and not revoked.
async fn load_mutable_key(
    tx: &mut AnyConnection,
    org: OrgId,
    id: KeyId,
    context: &AuditContext,
) -> Result<KeyRecord, StoreError> {
    let key = load_reachable_key(tx, org, id, context).await?;
    if key.revoked_at.is_some() {
        return Err(StoreError::Conflict(Conflict::Revoked));
    }
    Ok(key)
}

async fn insert_key(
    tx: &mut AnyConnection,
    key: &NewKey,
    rotated_from: Option<KeyId>,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let (rpm, burst) = rate_limit_columns(key.rate_limit);
    let sql = format!(
        "INSERT INTO api_keys (id, org_id, name, environment, truncated, digest, pepper_id, \
         secret_hash, scopes, rate_limit_rpm, rate_limit_burst, metadata, created_at, created_by, \
         updated_at, expires_at, rotated_from) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13, $15, $16) \
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
        .fetch_one(&mut *tx)
        .await?;
    let record = key_from_row(&row)?;
    append_change(
        tx,
        record.org_id,
        ChangeOp::Upsert(record.table_entry()),
        now,
    )
    .await?;
    Ok(record)
}

/// Writes every mutable column of `key` back and logs the change for the edges.
async fn save_key(
    tx: &mut AnyConnection,
    key: &KeyRecord,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let (rpm, burst) = rate_limit_columns(key.rate_limit);
    let sql = format!(
        "UPDATE api_keys SET name = $1, scopes = $2, rate_limit_rpm = $3, rate_limit_burst = $4, \
         metadata = $5, updated_at = $6, expires_at = $7, revoked_at = $8, \
         revocation_reason = $9, revocation_note = $10, rotated_to = $11, deleted_at = $12 \
         WHERE org_id = $13 AND id = $14 RETURNING {KEY_COLUMNS}"
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
        .fetch_one(&mut *tx)
        .await?;
    let saved = key_from_row(&row)?;
    let op = if saved.deleted_at.is_some() {
        ChangeOp::Remove(saved.digest)
    } else {
        ChangeOp::Upsert(saved.table_entry())
    };
    append_change(tx, saved.org_id, op, now).await?;
    Ok(saved)
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn org_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM orgs")
            .fetch_one(&self.pool)
            .await?;
        u64_of(row.try_get::<i64, _>(0)?)
    }

    async fn create_org(
        &self,
        org: NewOrg,
        admin: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(OrgRecord, KeyRecord), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO orgs (id, name, created_at, audit_seq, audit_head) \
             VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(org.id.to_bytes().to_vec())
        .bind(org.name.clone())
        .bind(now.as_millis())
        .bind(GENESIS.to_vec())
        .execute(&mut *tx)
        .await?;
        let mut head = lock_org(&mut tx, org.id).await?;
        let key = insert_key(&mut tx, &admin, None, now).await?;
        let details = json!({
            "org_name": org.name,
            "admin_key": key_summary(&key),
        });
        let entry = AuditEntry {
            action: AuditAction::OrgCreated,
            target: Some(key.id),
            details,
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        let record = OrgRecord {
            id: org.id,
            name: org.name,
            created_at: now,
        };
        Ok((record, key))
    }

    async fn key_by_digest(&self, digest: &LookupDigest) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(digest.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| key_from_row(&row))
            .transpose()
    }

    async fn key(&self, org: OrgId, id: KeyId) -> Result<KeyRecord, StoreError> {
        let mut connection = self.pool.acquire().await?;
        load_key(&mut connection, org, id)
            .await?
            .filter(|key| key.deleted_at.is_none())
            .ok_or(StoreError::NotFound)
    }

    async fn list_keys(
        &self,
        org: OrgId,
        filter: &KeyFilter,
        now: Timestamp,
    ) -> Result<Page<KeyRecord>, StoreError> {
        let mut query = Filtered::new("org_id", Param::Bytes(org.to_bytes().to_vec()));
        query.condition("deleted_at IS NULL");
        let now_param = || Param::Int(now.as_millis());
        match filter.state {
            None => {}
            Some(KeyState::Revoked) => query.condition("revoked_at IS NOT NULL"),
            Some(KeyState::Expired) => {
                let now = query.bind(now_param());
                query.condition(&format!(
                    "revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= {now}"
                ));
            }
            Some(KeyState::Active) => {
                let now = query.bind(now_param());
                query.condition(&format!(
                    "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {now})"
                ));
            }
        }
        if let Some(environment) = filter.environment {
            let environment = query.bind(Param::Text(environment.as_str().to_owned()));
            query.condition(&format!("environment = {environment}"));
        }
        if let Some(text) = &filter.name_contains {
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            let pattern = query.bind(Param::Text(pattern));
            query.condition(&format!("LOWER(name) LIKE {pattern} ESCAPE '\\'"));
        }
        match filter.never_used {
            None => {}
            Some(true) => query.condition("last_used_at IS NULL"),
            Some(false) => query.condition("last_used_at IS NOT NULL"),
        }
        if let Some(before) = filter.last_used_before {
            let before = query.bind(Param::Int(before.as_millis()));
            query.condition(&format!("last_used_at IS NULL OR last_used_at < {before}"));
        }
        if let Some(ip) = &filter.last_used_ip {
            let ip = query.bind(Param::Text(ip.clone()));
            query.condition(&format!("last_used_ip = {ip}"));
        }
        if !filter.last_used_ip_not.is_empty() {
            let expected: Vec<String> = filter
                .last_used_ip_not
                .iter()
                .map(|ip| query.bind(Param::Text(ip.clone())))
                .collect();
            query.condition(&format!(
                "last_used_ip IS NOT NULL AND last_used_ip NOT IN ({})",
                expected.join(", ")
            ));
        }
        if let Some((at, id)) = filter.after {
            let at = query.bind(Param::Int(at.as_millis()));
            let id = query.bind(Param::Bytes(id.to_bytes().to_vec()));
            // A row-value comparison, so both databases seek the listing index to the cursor
            // instead of filtering every row before it.
            query.condition(&format!("(created_at, id) < ({at}, {id})"));
        }
        let limit = query.bind(Param::Int(i64::from(filter.limit) + 1));
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE {} ORDER BY created_at DESC, id DESC \
             LIMIT {limit}",
            query.conditions()
        );
        let rows = query.fetch_all(&sql, &self.pool).await?;
        let mut items = rows
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > filter.limit as usize;
        items.truncate(filter.limit as usize);
        Ok(Page { items, has_more })
    }

    async fn create_key(
        &self,
        key: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, key.org_id).await?;
        let record = insert_key(&mut tx, &key, None, now).await?;
        let entry = AuditEntry {
            action: AuditAction::KeyCreated,
            target: Some(record.id),
            details: key_summary(&record),
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn update_key(
        &self,
        org: OrgId,
        id: KeyId,
        changes: KeyChanges,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, org).await?;
        let before = load_mutable_key(&mut tx, org, id, context).await?;
        // A rotated key (in its grace period) or an expired one cannot be edited back to life.
        before.check_changeable(now).map_err(StoreError::Conflict)?;
        let mut after = before.clone();
        if let Some(name) = changes.name {
            after.name = name;
        }
        if let Some(scopes) = changes.scopes {
            after.scopes = scopes;
        }
        if let Some(expires_at) = changes.expires_at {
            after.expires_at = expires_at;
        }
        if let Some(rate_limit) = changes.rate_limit {
            after.rate_limit = rate_limit;
        }
        if let Some(metadata) = changes.metadata {
            after.metadata = metadata;
        }
        let saved = save_key(&mut tx, &after, now).await?;
        let entry = AuditEntry {
            action: AuditAction::KeyUpdated,
            target: Some(id),
            details: json!({ "before": key_summary(&before), "after": key_summary(&saved) }),
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        Ok(saved)
    }

    async fn rotate_key(
        &self,
        org: OrgId,
        id: KeyId,
        rotation: Rotation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(KeyRecord, KeyRecord), StoreError> {
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, org).await?;
        let mut old = load_mutable_key(&mut tx, org, id, context).await?;
        old.check_changeable(now).map_err(StoreError::Conflict)?;
        let successor = NewKey {
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            rate_limit: old
                .rate_limit
                .map(|limit| rotation.max_rate_limit.cap(limit)),
            metadata: old.metadata.clone(),
            expires_at: old.expires_at,
            ..rotation.successor
        };
        let new = insert_key(&mut tx, &successor, Some(old.id), now).await?;
        old.rotated_to = Some(new.id);
        if rotation.grace_millis > 0 {
            // The grace period never extends the old key's own life.
            let grace_end = now.plus_millis(rotation.grace_millis);
            old.expires_at = Some(old.expires_at.map_or(grace_end, |own| own.min(grace_end)));
        } else {
            old.revoked_at = Some(now);
            old.revocation = Some(Revocation {
                reason: RevocationReason::Replaced,
                note: Some(format!("rotated to {}", new.id)),
            });
        }
        let old = save_key(&mut tx, &old, now).await?;
        let entry = AuditEntry {
            action: AuditAction::KeyRotated,
            target: Some(old.id),
            details: json!({
                "successor": key_summary(&new),
                "grace_seconds": rotation.grace_millis / 1000,
                "old_key_expires_at": old.expires_at.map(Timestamp::as_millis),
                "old_key_revoked": old.revoked_at.is_some(),
            }),
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        Ok((old, new))
    }

    async fn revoke_key(
        &self,
        org: OrgId,
        id: KeyId,
        revocation: Revocation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, org).await?;
        let key = load_reachable_key(&mut tx, org, id, context).await?;
        let (outcome, details) = if key.revoked_at.is_some() {
            let details = json!({
                "already_revoked": true,
                "requested_reason": revocation.reason.as_str(),
                "requested_note": revocation.note,
            });
            (RevokeOutcome::AlreadyRevoked(key), details)
        } else {
            let details = json!({
                "already_revoked": false,
                "reason": revocation.reason.as_str(),
                "note": revocation.note,
            });
            let mut revoked = key;
            revoked.revoked_at = Some(now);
            revoked.revocation = Some(revocation);
            let saved = save_key(&mut tx, &revoked, now).await?;
            (RevokeOutcome::Revoked(saved), details)
        };
        let entry = AuditEntry {
            action: AuditAction::KeyRevoked,
            target: Some(id),
            details,
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn delete_key(
        &self,
        org: OrgId,
        id: KeyId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, org).await?;
        let mut key = load_reachable_key(&mut tx, org, id, context).await?;
        let state = key.state(now);
        if state == KeyState::Active {
            return Err(StoreError::Conflict(Conflict::StillActive));
        }
        key.deleted_at = Some(now);
        let saved = save_key(&mut tx, &key, now).await?;
        let entry = AuditEntry {
            action: AuditAction::KeyDeleted,
            target: Some(id),
            details: json!({ "state": state.as_str(), "name": saved.name }),
            context,
        };
        append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        tx.commit().await?;
        Ok(saved)
    }

    async fn record_failed_auths(
        &self,
        org: OrgId,
        records: &[FailedAuth],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut head = lock_org(&mut tx, org).await?;
        for record in records {
            let entry = AuditEntry {
                action: AuditAction::AuthFailed,
                target: record.context.actor,
                details: record.details.clone(),
                context: &record.context,
            };
            append_audit(&mut tx, &self.sealer, &mut head, entry, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
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
        let rows = query.fetch_all(&sql, &self.pool).await?;
        let mut items = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > filter.limit as usize;
        items.truncate(filter.limit as usize);
        Ok(Page { items, has_more })
    }

    async fn audit_head(&self, org: OrgId) -> Result<(u64, [u8; 32]), StoreError> {
        let head = sqlx::query("SELECT audit_seq, audit_head FROM orgs WHERE id = $1")
            .bind(org.to_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((
            u64_of(head.try_get::<i64, _>(0)?)?,
            bytes32(head.try_get::<Vec<u8>, _>(1)?)?,
        ))
    }

    async fn audit_page(
        &self,
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
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        replication::feed_head(&self.pool).await
    }

    async fn changes_after(&self, after: u64, limit: u64) -> Result<Vec<Change>, StoreError> {
        replication::changes_after(&self.pool, after, limit).await
    }

    fn feed_history(&self) -> HistoryId {
        self.history
    }

    async fn chain_at(&self, seq: u64) -> Result<FeedChain, StoreError> {
        replication::chain_at(&self.pool, self.history, seq).await
    }

    async fn register_edge(
        &self,
        name: &str,
        url: &str,
        reported_seq: Option<u64>,
        now: Timestamp,
    ) -> Result<Registration, StoreError> {
        replication::register_edge(&self.pool, name, url, reported_seq, now.as_millis()).await
    }

    async fn edges(&self) -> Result<Vec<EdgeRecord>, StoreError> {
        replication::edges(&self.pool).await
    }

    async fn record_push(
        &self,
        name: &str,
        acked_seq: Option<u64>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        replication::record_push(&self.pool, name, acked_seq, error, now.as_millis()).await
    }

    async fn remove_edge(&self, name: &str) -> Result<bool, StoreError> {
        replication::remove_edge(&self.pool, name).await
    }

    async fn ingest_usage(&self, batch: &UsageBatch) -> Result<IngestReport, StoreError> {
        usage::ingest(&self.pool, self.backend, batch).await
    }

    async fn list_usage(
        &self,
        org: OrgId,
        key: KeyId,
        filter: &UsageFilter,
    ) -> Result<Page<UsageRecord>, StoreError> {
        usage::list(&self.pool, org, key, filter).await
    }

    async fn daily_usage(
        &self,
        org: OrgId,
        key: KeyId,
        from: Timestamp,
        days: u32,
    ) -> Result<Vec<DailyStatusCount>, StoreError> {
        usage::daily(&self.pool, org, key, from, days).await
    }

    async fn delete_usage_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        usage::delete_before(&self.pool, cutoff).await
    }
}

/// The non-secret facts of a key, as audit details.
fn key_summary(key: &KeyRecord) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "environment": key.environment.as_str(),
        "truncated": key.truncated,
        "scopes": key.scopes,
        "expires_at": key.expires_at.map(Timestamp::as_millis),
        "rate_limit": key.rate_limit.map(|limit| json!({
            "requests_per_minute": limit.requests_per_minute(),
            "burst": limit.burst(),
        })),
        "metadata": key.metadata,
    })
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

/// Escapes `LIKE` wildcards so user text matches literally (with `ESCAPE '\'`).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
