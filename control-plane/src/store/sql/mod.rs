//! [`Store`] on SQLite or PostgreSQL, through sqlx's `Any` driver.
//!
//! The two backends share every query: both accept `$n` parameters, `RETURNING`, and the types
//! used here (integers, text, bytes). What differs lives in [`Backend`] (`connect.rs`): connection
//! set-up and the migrations; and statements generated with many parameters (usage batches)
//! take their markers from `markers.rs`, `?` on SQLite, where binding `$n` costs the square of
//! their count.
//!
//! The SQL is split by concern: `keys.rs` (key rows and their mutations), `key_list.rs` (the
//! listing filters), `audit.rs` (the audit log), `replication.rs` (the feed, snapshots, the edge
//! registry), `usage.rs` (usage events), `webhooks.rs` and `outbox.rs` (webhook endpoints, events and
//! their deliveries); `journal.rs` is the mutation transaction and the two
//! logs it appends to; `rows.rs` and `filtered.rs` read rows and build filtered queries.
//!
//! Serialization: each mutation's first statement updates its organization's row (the audit
//! chain head). In PostgreSQL that takes the row lock; in SQLite the first write takes the
//! database's write lock. Either way, mutations of one organization run one at a time, and
//! each sees the effects of the one before it. Within one instance they also wait for the
//! organization's turn before taking a connection (`org_turns.rs`), so the ones waiting hold
//! none.

use async_trait::async_trait;
use keyplane_shared::ids::{HistoryId, KeyId, OrgId};
use keyplane_shared::usage::UsageBatch;
use keyplane_shared::{Change, FeedChain, LookupDigest, Timestamp};
use sqlx::{AnyPool, Row as _};
use tokio::sync::watch;

mod audit;
mod bounded_reads;
mod commit_listener;
mod connect;
mod directory;
mod expiry;
mod expiry_settings;
mod filtered;
mod host_orgs;
mod invitations;
mod journal;
mod key_list;
mod keys;
mod leaks;
mod markers;
mod members;
mod org_turns;
mod outbox;
mod people;
mod portal;
mod replication;
mod rows;
mod sessions;
mod sweep;
mod usage;
mod webhook_rows;
mod webhooks;

pub use self::connect::Backend;
pub use self::expiry::EXPIRED_WINDOW_MS;
use super::feed_heads::FeedHeads;
use super::records::*;
use super::{
    DailyStatusCount, EdgeRecord, FeedSnapshot, IngestReport, Registration, Store, StoreError,
    UsageFilter, UsageRecord,
};
use crate::store::audit_chain::AuditSealer;

/// The store on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    sealer: AuditSealer,
    history: HistoryId,
    heads: FeedHeads,
    /// One writer per organization at a time takes a connection (see `org_turns.rs`).
    turns: org_turns::OrgTurns,
    /// The database's URL, for the commit listener's own connection (it may hold a password).
    url: secrecy::SecretString,
}

impl SqlStore {
    /// Connects, applies pending migrations and returns the store.
    pub async fn connect(url: &str, sealer: AuditSealer) -> Result<Self, StoreError> {
        let (pool, backend) = connect::open(url).await?;
        let history = replication::ensure_lineage(&pool).await?;
        let heads = FeedHeads::new(replication::feed_head(&pool).await?);
        Ok(SqlStore {
            pool,
            backend,
            sealer,
            history,
            heads,
            turns: org_turns::OrgTurns::new(backend.acquire_timeout()),
            url: secrecy::SecretString::from(url.to_owned()),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn first_start_lock(&self) -> Result<crate::store::FirstStartLock, StoreError> {
        connect::first_start_lock(&self.pool, self.backend).await
    }

    async fn org_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM orgs")
            .fetch_one(&self.pool)
            .await?;
        rows::u64_of(row.try_get::<i64, _>(0)?)
    }

    async fn create_org(
        &self,
        org: NewOrg,
        admin: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(OrgRecord, KeyRecord), StoreError> {
        keys::create_org(self, org, admin, context, now).await
    }

    async fn key_by_digest(&self, digest: &LookupDigest) -> Result<Option<KeyRecord>, StoreError> {
        keys::by_digest(self, digest).await
    }

    async fn key(&self, org: OrgId, id: KeyId) -> Result<KeyRecord, StoreError> {
        let mut connection = self.pool.acquire().await?;
        keys::load_key(&mut connection, org, id)
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
        key_list::list(self, org, filter, now).await
    }

    async fn create_key(
        &self,
        key: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        keys::create(self, key, context, now).await
    }

    async fn update_key(
        &self,
        org: OrgId,
        id: KeyId,
        changes: KeyChanges,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        keys::update(self, org, id, changes, context, now).await
    }

    async fn rotate_key(
        &self,
        org: OrgId,
        id: KeyId,
        rotation: Rotation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(KeyRecord, KeyRecord), StoreError> {
        keys::rotate(self, org, id, rotation, context, now).await
    }

    async fn revoke_key(
        &self,
        org: OrgId,
        id: KeyId,
        revocation: Revocation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError> {
        keys::revoke(self, org, id, revocation, context, now).await
    }

    async fn revoke_leaked(
        &self,
        org: OrgId,
        leaks: Vec<super::LeakedKey>,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        leaks::revoke_leaked(self, org, leaks, context, now).await
    }

    async fn delete_key(
        &self,
        org: OrgId,
        id: KeyId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        keys::delete(self, org, id, context, now).await
    }

    async fn record_failed_auths(
        &self,
        org: OrgId,
        records: &[FailedAuth],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        audit::record_failed_auths(self, org, records, now).await
    }

    async fn list_audit(
        &self,
        org: OrgId,
        filter: &AuditFilter,
    ) -> Result<Page<AuditRecord>, StoreError> {
        audit::list(self, org, filter).await
    }

    async fn audit_head(&self, org: OrgId) -> Result<(u64, [u8; 32]), StoreError> {
        audit::head(self, org).await
    }

    async fn audit_page(
        &self,
        org: OrgId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        audit::page(self, org, after, limit).await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        replication::feed_head(&self.pool).await
    }

    fn feed_heads(&self) -> watch::Receiver<u64> {
        self.heads.subscribe()
    }

    fn spawn_commit_listener(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        (self.backend == Backend::Postgres)
            .then(|| commit_listener::spawn(self.url.clone(), self.heads.clone(), shutdown))
    }

    async fn changes_after(&self, after: u64, limit: u64) -> Result<Vec<Change>, StoreError> {
        replication::changes_after(&self.pool, after, limit).await
    }

    async fn changes_within(
        &self,
        after: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<Change>, StoreError> {
        bounded_reads::changes_within(after, limit, max_bytes, |from, count| {
            replication::stored_changes_after(&self.pool, from, count)
        })
        .await
    }

    async fn snapshot_at(&self, seq: u64) -> Result<FeedSnapshot, StoreError> {
        replication::snapshot_at(&self.pool, self.history, seq).await
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

    async fn ingest_usage(
        &self,
        batch: &UsageBatch,
        now: Timestamp,
    ) -> Result<IngestReport, StoreError> {
        usage::ingest(&self.pool, self.backend, batch, now).await
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
