//! Persistence: the [`Store`] trait the API is written against, and the records it deals in.
//!
//! Every mutation is one call and one database transaction that writes the key rows, the
//! replication change log entry and the audit record together, so a crash can never leave a key
//! changed without its audit trail or without the change its edges need. What a mutation may do
//! to a key is decided by [`lifecycle`], pure rules over the record; the store locks, loads and
//! saves. After committing a change the store announces the new feed head ([`feed_heads`]). Mutations of one
//! organization's keys are serialized (they lock the organization's row first), which is what
//! makes concurrent rotate / revoke / update of one key come out as one consistent history.
//!
//! Usage events are the exception: they are a log of what the edges saw, not a change to a key,
//! so ingesting them touches neither the audit chain nor the change log (see [`usage`]).
//!
//! [`sql::SqlStore`] implements the trait for SQLite and PostgreSQL.

pub mod audit_action;
pub mod audit_chain;
pub mod feed_heads;
pub mod lifecycle;
pub mod outbox;
pub mod people;
pub mod portal;
pub mod records;
pub mod sql;
pub mod usage;
pub mod webhooks;

use async_trait::async_trait;
use keyplane_shared::ids::{HistoryId, KeyId, OrgId};
use keyplane_shared::usage::UsageBatch;
use keyplane_shared::{Change, FeedChain, KeyTable, LookupDigest, Timestamp};
use thiserror::Error;
use tokio::sync::watch;

pub use people::{
    HostUser, InvitationRecord, Joining, JudgedMember, KeysOnRemoval, MemberRecord, Membership,
    NewInvitation, NewSession, PeopleStore, Reconciliation, RoleRecord, SessionKind, SessionRecord,
    UserRecord, UserSummary,
};
pub use portal::{Branding, BrandingUpdate, NewPortalLink, PortalStore, UsedPortalLink};
pub use records::{
    AuditAction, AuditContext, AuditFilter, AuditRecord, FailedAuth, KeyChanges, KeyFilter,
    KeyRecord, KeyState, NewKey, NewOrg, OrgRecord, Page, Reach, Revocation, RevocationReason,
    RevokeOutcome, Rotation, SuccessorExpiry,
};
pub use usage::{DailyStatusCount, IngestReport, StatusFilter, UsageFilter, UsageRecord};
pub use webhooks::{
    Attempt, AttemptRecord, ClaimedDelivery, FailureStreak, LeakedKey, NewWebhook, NextStep,
    WebhookChanges, WebhookHistorySwept, WebhookRecord, WebhookStore,
};

/// Why a storage call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such organization or key (or it belongs to another organization, or was deleted).
    #[error("not found")]
    NotFound,
    /// The key holds scopes the caller does not: it is out of the caller's reach.
    #[error("the key holds scopes the caller does not")]
    OutOfReach,
    /// The caller manages only the keys it owns, and this one is someone else's.
    #[error("the key belongs to another member")]
    NotOwner,
    /// The key's state forbids the change.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// The database could not be reached or did not answer in time.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Other changes to the same organization held this one back longer than a connection
    /// would have been waited for (see `sql::org_turns`).
    #[error("other changes to this organization are taking too long")]
    Busy,
    /// The database refused a statement.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored row could not be read back into a record.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The management key that made the call was revoked or expired, or the person who made
    /// it was removed from the organization, while the call was on its way (checked under the
    /// organization's lock, so the change and the caller's end are ordered: a key revoked
    /// first makes nothing afterwards).
    #[error("the caller ended during the call: {0}")]
    CallerEnded(CallerEnded),
}

/// How a caller's standing ended while its call was on its way ([`StoreError::CallerEnded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CallerEnded {
    /// The calling management key was revoked (or deleted).
    #[error("revoked")]
    Revoked,
    /// The calling management key expired.
    #[error("expired")]
    Expired,
    /// The person signed in was removed from the organization (their sessions there ended).
    #[error("removed from the organization")]
    Removed,
}

/// A change refused because of the key's state. Each has its own API error code
/// ([`Conflict::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Conflict {
    /// The key is revoked: nothing about it can change any more.
    #[error("the key is revoked")]
    Revoked,
    /// The key has expired.
    #[error("the key has expired")]
    Expired,
    /// Only revoked or expired keys can be deleted.
    #[error("only revoked or expired keys can be deleted")]
    StillActive,
    /// The key was already rotated (it may still work for its grace period); rotate or change
    /// its successor instead.
    #[error("the key was rotated: rotate or change its successor instead")]
    AlreadyRotated,
    /// The change would leave the organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// Members still hold the role.
    #[error("members still hold this role: give them another role first")]
    RoleInUse,
    /// The role exists already.
    #[error("a role with this name exists")]
    RoleExists,
    /// The invitation was used already.
    #[error("this invitation was already used")]
    InvitationUsed,
    /// The invitation has expired.
    #[error("this invitation has expired: ask for a new one")]
    InvitationExpired,
    /// The invitation was revoked.
    #[error("this invitation was revoked: ask for a new one")]
    InvitationRevoked,
    /// The custom role the invitation names was deleted after it was sent.
    #[error("the role this invitation gives was deleted: ask for a new invitation")]
    InvitationRoleDeleted,
    /// The user is a member already.
    #[error("this user is already a member of the organization")]
    AlreadyMember,
    /// The user named is not a member of the organization.
    #[error("that user is not a member of this organization")]
    NotAMember,
    /// The organization has as many webhook endpoints as it may.
    #[error("this organization has the most webhook endpoints allowed: delete one first")]
    TooManyWebhooks,
    /// The webhook endpoint is disabled: nothing is sent to it.
    #[error("this endpoint is disabled: enable it, then send the event again")]
    WebhookDisabled,
    /// The signed-in caller's role (or its ceiling) changed while the call was on its way:
    /// nothing was changed, and the call may be made again under the new role.
    #[error(
        "your role in this organization changed during the call: nothing was changed, try again"
    )]
    RoleChanged,
    /// The member's role changed while the call was on its way (the caller's right to make the
    /// change was judged on the role they held before): nothing was changed.
    #[error("the member's role changed during the call: nothing was changed, look again and retry")]
    MemberChanged,
}

impl Conflict {
    /// The API error code of a 409 with this conflict.
    pub fn code(self) -> &'static str {
        match self {
            Conflict::Revoked => "key_revoked",
            Conflict::Expired => "key_expired",
            Conflict::StillActive => "key_active",
            Conflict::AlreadyRotated => "key_rotated",
            Conflict::LastOwner => "last_owner",
            Conflict::RoleInUse => "role_in_use",
            Conflict::RoleExists => "role_exists",
            Conflict::InvitationUsed => "invitation_used",
            Conflict::InvitationExpired => "invitation_expired",
            Conflict::InvitationRevoked => "invitation_revoked",
            Conflict::InvitationRoleDeleted => "invitation_role_deleted",
            Conflict::AlreadyMember => "already_member",
            Conflict::NotAMember => "not_a_member",
            Conflict::TooManyWebhooks => "too_many_webhooks",
            Conflict::WebhookDisabled => "webhook_disabled",
            Conflict::RoleChanged => "role_changed",
            Conflict::MemberChanged => "member_changed",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            sqlx::Error::Database(ref refusal) if is_momentary(refusal.as_ref()) => {
                StoreError::Unavailable(error)
            }
            other => StoreError::Database(other),
        }
    }
}

/// Whether the database refused a statement for a moment rather than for what it says: a lock
/// held elsewhere for longer than the connection waits (SQLite's busy timeout; PostgreSQL's
/// lock timeout, a deadlock), or a PostgreSQL server shutting down or full. Trying again later
/// can succeed, so the call is [`StoreError::Unavailable`] (503 `unavailable`), not a fault.
fn is_momentary(refusal: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(refusal) = refusal.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // serialization_failure, deadlock_detected, lock_not_available, too_many_connections,
        // admin_shutdown, crash_shutdown, cannot_connect_now.
        return matches!(
            refusal.code(),
            "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03"
        );
    }
    if refusal
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        // The extended result code; its low byte is the primary one: SQLITE_BUSY (5) or
        // SQLITE_LOCKED (6), whatever the extension.
        return refusal
            .code()
            .and_then(|code| code.parse::<u32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6));
    }
    false
}

/// Held while an instance makes the first organization ([`Store::first_start_lock`]).
pub type FirstStartLock = Box<dyn Send>;

/// The storage operations of the control plane.
#[async_trait]
pub trait Store: PeopleStore + PortalStore + WebhookStore + Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the database connections (waiting for those in use); every later call fails as
    /// [`StoreError::Unavailable`].
    async fn close(&self);

    /// Number of organizations (zero on a fresh database).
    async fn org_count(&self) -> Result<u64, StoreError>;

    /// Waits for, then holds, the right to make the first organization: instances starting
    /// together on one database make it once (on PostgreSQL an advisory lock on a connection
    /// of its own; SQLite serves one instance per file). Released when the guard is dropped.
    async fn first_start_lock(&self) -> Result<FirstStartLock, StoreError>;

    /// Creates an organization together with its first admin key.
    async fn create_org(
        &self,
        org: NewOrg,
        admin: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(OrgRecord, KeyRecord), StoreError>;

    /// The key with this lookup digest, in any organization and state (for authentication).
    async fn key_by_digest(&self, digest: &LookupDigest) -> Result<Option<KeyRecord>, StoreError>;

    /// One key of one organization; deleted keys are not found.
    async fn key(&self, org: OrgId, id: KeyId) -> Result<KeyRecord, StoreError>;

    /// A page of an organization's keys, newest first.
    async fn list_keys(
        &self,
        org: OrgId,
        filter: &KeyFilter,
        now: Timestamp,
    ) -> Result<Page<KeyRecord>, StoreError>;

    /// Stores a new key.
    async fn create_key(
        &self,
        key: NewKey,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError>;

    /// Changes a key in place.
    async fn update_key(
        &self,
        org: OrgId,
        id: KeyId,
        changes: KeyChanges,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError>;

    /// Replaces a key by a new one with the same settings; returns (old, new).
    async fn rotate_key(
        &self,
        org: OrgId,
        id: KeyId,
        rotation: Rotation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(KeyRecord, KeyRecord), StoreError>;

    /// Revokes a key; revoking a revoked key changes nothing and says so.
    async fn revoke_key(
        &self,
        org: OrgId,
        id: KeyId,
        revocation: Revocation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError>;

    /// Revokes keys reported as leaked, all of one organization, in one transaction: each
    /// active one with reason `compromised` and a note naming where it was found, audited and
    /// announced as `key.revoked` and `key.leaked`. Already revoked keys are left as they are
    /// (a replayed report changes nothing), and so are deleted ones. For each key, whether it
    /// was revoked now.
    async fn revoke_leaked(
        &self,
        org: OrgId,
        leaks: Vec<LeakedKey>,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError>;

    /// Hides a revoked or expired key from listings; its audit trail stays.
    async fn delete_key(
        &self,
        org: OrgId,
        id: KeyId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError>;

    /// Records management requests that were refused after their key was identified, in order,
    /// in one transaction (see [`crate::audit::refusals`] for how they are coalesced).
    async fn record_failed_auths(
        &self,
        org: OrgId,
        records: &[FailedAuth],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// A page of an organization's audit records, newest first.
    async fn list_audit(
        &self,
        org: OrgId,
        filter: &AuditFilter,
    ) -> Result<Page<AuditRecord>, StoreError>;

    /// The chain head the organization row holds: the sequence number and hash of its last
    /// audit record (written in the same transaction as that record).
    async fn audit_head(&self, org: OrgId) -> Result<(u64, [u8; 32]), StoreError>;

    /// Up to `limit` audit records of an organization with a sequence number above `after`, in
    /// chain order (for reading the whole chain a page at a time).
    async fn audit_page(
        &self,
        org: OrgId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The replication feed's head: the sequence number of the last committed change.
    async fn feed_head(&self) -> Result<u64, StoreError>;

    /// The feed head as this store commits changes: the receiver wakes after every commit that
    /// appended a change, with its sequence (see [`feed_heads`]). The pusher waits on it.
    fn feed_heads(&self) -> watch::Receiver<u64>;

    /// On PostgreSQL, a task that hears the commits of other instances on the same database
    /// and announces them in [`Store::feed_heads`] like this one's own, until `shutdown`;
    /// `None` where there is nothing to listen to (SQLite: one instance per file).
    fn spawn_commit_listener(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>>;

    /// Up to `limit` changes after sequence `after`, in order, without holes.
    async fn changes_after(&self, after: u64, limit: u64) -> Result<Vec<Change>, StoreError>;

    /// [`changes_after`](Self::changes_after), and only as many as fit in `max_bytes` encoded
    /// together (at least one): the log is read in growing steps until the bound is reached,
    /// not `limit` rows at once.
    async fn changes_within(
        &self,
        after: u64,
        limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<Change>, StoreError>;

    /// The table after changes `1..=seq` (`seq` at most the head), with the chain there.
    async fn snapshot_at(&self, seq: u64) -> Result<FeedSnapshot, StoreError>;

    /// The feed's history id, made with the database.
    fn feed_history(&self) -> HistoryId;

    /// The feed chain at sequence `seq` (0: the history's genesis); `NotFound` past the head.
    async fn chain_at(&self, seq: u64) -> Result<FeedChain, StoreError>;

    /// Registers an edge. From an operator (`reported_seq` is `None`) the edge is created or
    /// moved to `url`, and what it last reported stays as it was. From the edge's own pull
    /// (`Some`: it was seen now, at that sequence) a new name is registered and a known one
    /// updated only if `url` is the one on record; another URL is refused (only an operator
    /// moves an edge), noted on the edge, and answered [`Registration::UrlConflict`].
    async fn register_edge(
        &self,
        name: &str,
        url: &str,
        reported_seq: Option<u64>,
        now: Timestamp,
    ) -> Result<Registration, StoreError>;

    /// Every registered edge, by name.
    async fn edges(&self) -> Result<Vec<EdgeRecord>, StoreError>;

    /// Records a push's outcome: the sequence the edge acknowledged (when it answered one), and
    /// the error (`None` clears the last one).
    async fn record_push(
        &self,
        name: &str,
        acked_seq: Option<u64>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Removes an edge from the registry; whether it was there.
    async fn remove_edge(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a batch of usage events in one transaction, each request id once. Events that
    /// name no key, a key that does not exist, or another organization than their key's are
    /// not stored. Each key named by a stored or duplicate event gets the `at` and IP of its
    /// newest event as `last_used_at` / `last_used_ip`, if that is newer than what it holds.
    /// A key's first 429 of an hour is announced as `key.rate_limited`, its deliveries due at
    /// `now`.
    async fn ingest_usage(
        &self,
        batch: &UsageBatch,
        now: Timestamp,
    ) -> Result<IngestReport, StoreError>;

    /// A page of one key's usage events, newest first (the key is not checked: call
    /// [`Store::key`] first).
    async fn list_usage(
        &self,
        org: OrgId,
        key: KeyId,
        filter: &UsageFilter,
    ) -> Result<Page<UsageRecord>, StoreError>;

    /// One key's requests in `[from, from + days)`, counted per day and status; `from` is the
    /// start of a UTC day. Days and statuses without requests are left out.
    async fn daily_usage(
        &self,
        org: OrgId,
        key: KeyId,
        from: Timestamp,
        days: u32,
    ) -> Result<Vec<DailyStatusCount>, StoreError>;

    /// Deletes every usage event older than `cutoff` (in bounded chunks, so no statement holds
    /// the table for long); how many it deleted.
    async fn delete_usage_before(&self, cutoff: Timestamp) -> Result<u64, StoreError>;
}

/// The whole key table at one sequence of the feed, as an edge loads it.
#[derive(Debug, Clone)]
pub struct FeedSnapshot {
    /// The table after changes `1..=seq`.
    pub table: KeyTable,
    /// Its sequence.
    pub seq: u64,
    /// The feed chain at `seq`.
    pub chain: FeedChain,
}

/// A registered edge and how replication to it is going.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EdgeRecord {
    /// Its name (`EDGE_NAME`).
    pub name: String,
    /// Where pushes go (`<url>/__keyplane/sync`).
    pub url: String,
    /// When it last pulled the feed.
    pub last_seen_at: Option<Timestamp>,
    /// The sequence it reported when it last pulled.
    pub reported_seq: u64,
    /// The highest sequence it acknowledged to a push.
    pub acked_seq: u64,
    /// When a push was last attempted.
    pub last_push_at: Option<Timestamp>,
    /// The last push's error, if it failed.
    pub last_error: Option<String>,
    /// The URL of the last pull that named this edge from elsewhere (refused), until the edge
    /// pulls from its own URL again or an operator moves it.
    pub conflict_url: Option<String>,
    /// When that pull came.
    pub conflict_at: Option<Timestamp>,
}

/// What registering an edge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The edge is registered at the URL given.
    Registered,
    /// A pull named an edge registered at another URL; nothing changed but the conflict note.
    UrlConflict {
        /// The URL on record, which stays.
        registered_url: String,
    },
}
