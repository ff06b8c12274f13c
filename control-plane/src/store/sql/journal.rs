//! A mutation's transaction and the two logs it appends to: the organization's audit chain and
//! the replication change log (each change with the feed chain after it); with an audit record,
//! the webhook event it announces goes to the outbox in the same transaction.
//!
//! [`Mutation`] is the only way to append a change, and its [`Mutation::commit`] announces the
//! new feed head ([`FeedHeads`]) once the transaction is committed: no change can be written
//! without the pusher hearing of it.

use keyplane_shared::ids::{KeyId, OrgId, UserId};
use keyplane_shared::table::codec::encode_changes;
use keyplane_shared::{Change, ChangeOp, FeedChain, Timestamp};
use sqlx::{Any, AnyConnection, AnyPool, Row as _, Transaction};

use super::SqlStore;
use super::org_turns::OrgTurn;
use super::outbox;
use super::people::{member_on, role_ceiling_on};
use super::rows::{bytes32, i64_of, u64_of};
use crate::access::RoleName;
use crate::store::audit_chain::{AuditSealer, GENESIS};
use crate::store::feed_heads::FeedHeads;
use crate::store::lifecycle::AuditNote;
use crate::store::outbox::event_for;
use crate::store::records::{AuditContext, AuditRecord, Reach};
use crate::store::{CallerEnded, Conflict, StoreError};

/// How long a mutation's statement waits for a lock on PostgreSQL: as long as a writer waits
/// for a connection or its turn.
pub(super) const LOCK_TIMEOUT: std::time::Duration = super::connect::POSTGRES_ACQUIRE_TIMEOUT;

/// One mutation's transaction, and the last change it appended to the feed.
pub(super) struct Mutation {
    tx: Transaction<'static, Any>,
    appended: Option<u64>,
}

impl Mutation {
    /// Begins a transaction. On PostgreSQL its lock waits (an organization's row, the feed
    /// row) end after [`LOCK_TIMEOUT`] with `lock_not_available`, which the store reports as
    /// [`StoreError::Unavailable`]: a row another instance keeps locked (one stuck in the
    /// middle of a change) makes a change fail with 503 `unavailable` instead of hanging for as
    /// long as it is held. SQLite's busy timeout bounds its writers the same way.
    pub(super) async fn begin(pool: &AnyPool) -> Result<Self, StoreError> {
        let mut tx = pool.begin().await?;
        if tx.backend_name() == "PostgreSQL" {
            // Local (`true`): this transaction only, not the pooled connection's later ones.
            sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                .bind(format!("{}ms", LOCK_TIMEOUT.as_millis()))
                .execute(&mut *tx)
                .await?;
        }
        Ok(Mutation { tx, appended: None })
    }

    /// The transaction's connection, for reads and for writes other than changes.
    pub(super) fn connection(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends a change for the edges (see [`append_change`]); it is announced at commit.
    pub(super) async fn append_change(
        &mut self,
        org: OrgId,
        op: ChangeOp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let seq = append_change(&mut self.tx, org, op, now).await?;
        self.appended = Some(seq);
        Ok(seq)
    }

    /// Commits, then announces the feed head if a change was appended (on PostgreSQL to the
    /// other instances too, by a `NOTIFY` sent at commit: see [`super::commit_listener`]).
    pub(super) async fn commit(mut self, heads: &FeedHeads) -> Result<(), StoreError> {
        if let Some(seq) = self.appended
            && self.tx.backend_name() == "PostgreSQL"
        {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::commit_listener::CHANNEL)
                .bind(seq.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        if let Some(seq) = self.appended {
            heads.publish(seq);
        }
        Ok(())
    }
}

/// A mutation of one organization: its transaction, with the organization's row locked and its
/// audit chain head read (see the module docs of [`super`] for why that serializes), begun in
/// the organization's turn in this process (see [`super::org_turns`]), which it holds until it
/// is committed or dropped.
pub(super) struct OrgMutation {
    mutation: Mutation,
    head: ChainHead,
    /// Declared last: dropped after the transaction ends.
    _turn: OrgTurn,
}

impl OrgMutation {
    /// Waits for `org`'s turn, then begins a transaction and locks `org`.
    pub(super) async fn begin(store: &SqlStore, org: OrgId) -> Result<Self, StoreError> {
        let turn = store.turns.take(org).await?;
        let mutation = Mutation::begin(&store.pool).await?;
        Self::lock_in_turn(mutation, org, turn).await
    }

    /// [`OrgMutation::begin`], for a call by `context`'s caller (every change of an
    /// organization a caller makes: keys, members, roles, invitations, webhooks, settings):
    /// once `org` is locked, a calling management key must still be in force at `now`, and a
    /// person signed in with a session must still be a member with the role and ceiling they
    /// were authenticated with ([`StoreError::CallerEnded`], [`Conflict::RoleChanged`] if
    /// not). Authentication was read before the lock, and a create or rotate then waits for
    /// its hashing (seconds under load): without this, a key revoked in between (a leaked
    /// admin key, the usual incident response) would go on making keys for as long as its
    /// queued calls last, and so would a member removed or demoted in between.
    pub(super) async fn begin_for(
        store: &SqlStore,
        org: OrgId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let mut mutation = Self::begin(store, org).await?;
        if let Some(caller) = context.actor {
            caller_in_force(mutation.connection(), org, caller, now).await?;
        }
        if let (Some(user), Some(role)) = (context.actor_user, &context.session_role) {
            person_in_standing(mutation.connection(), org, user, role, &context.reach).await?;
        }
        Ok(mutation)
    }

    /// Locks `org` in `mutation`, a transaction that has just created the organization (no
    /// other writer can know it yet, so its turn is free: the transaction waits for nothing
    /// while it holds its connection).
    pub(super) async fn lock_new(
        store: &SqlStore,
        mutation: Mutation,
        org: OrgId,
    ) -> Result<Self, StoreError> {
        let turn = store.turns.take(org).await?;
        Self::lock_in_turn(mutation, org, turn).await
    }

    /// Locks `org` in `mutation`, begun in `org`'s `turn`.
    async fn lock_in_turn(
        mut mutation: Mutation,
        org: OrgId,
        turn: OrgTurn,
    ) -> Result<Self, StoreError> {
        let head = lock_org(mutation.connection(), org).await?;
        Ok(OrgMutation {
            mutation,
            head,
            _turn: turn,
        })
    }

    /// Appends one sealed audit record (what `note` says, with the caller's `context`), and
    /// the webhook event it announces, if any, to the outbox: both commit or neither does.
    pub(super) async fn audit(
        &mut self,
        sealer: &AuditSealer,
        note: AuditNote,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(event) = event_for(self.head.org, &note, context, now)? {
            outbox::enqueue(self.mutation.connection(), &event, now).await?;
        }
        append_audit(
            self.mutation.connection(),
            sealer,
            &mut self.head,
            note,
            context,
            now,
        )
        .await
    }

    /// Commits, then announces the feed head (see [`Mutation::commit`]).
    pub(super) async fn commit(self, heads: &FeedHeads) -> Result<(), StoreError> {
        self.mutation.commit(heads).await
    }
}

impl std::ops::Deref for OrgMutation {
    type Target = Mutation;
    fn deref(&self) -> &Mutation {
        &self.mutation
    }
}

impl std::ops::DerefMut for OrgMutation {
    fn deref_mut(&mut self) -> &mut Mutation {
        &mut self.mutation
    }
}

/// Whether the management key `caller` is still in force at `now` (not revoked, deleted or
/// expired), read under `org`'s lock.
async fn caller_in_force(
    tx: &mut AnyConnection,
    org: OrgId,
    caller: KeyId,
    now: Timestamp,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT revoked_at, deleted_at, expires_at FROM api_keys WHERE id = $1 AND org_id = $2",
    )
    .bind(caller.to_bytes().to_vec())
    .bind(org.to_bytes().to_vec())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::CallerEnded(CallerEnded::Revoked))?;
    let ended = |column: &str| row.try_get::<Option<i64>, _>(column);
    if ended("revoked_at")?.is_some() || ended("deleted_at")?.is_some() {
        return Err(StoreError::CallerEnded(CallerEnded::Revoked));
    }
    if ended("expires_at")?.is_some_and(|at| at <= now.as_millis()) {
        return Err(StoreError::CallerEnded(CallerEnded::Expired));
    }
    Ok(())
}

/// Whether `user`, a person signed in with a session, still holds `role` in `org` with the
/// ceiling their call's `reach` was given, read under `org`'s lock: removed (their sessions
/// ended with it) is [`CallerEnded::Removed`]; another role, or their role's ceiling changed,
/// is [`Conflict::RoleChanged`] (the call may be made again, judged under the new role).
async fn person_in_standing(
    tx: &mut AnyConnection,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    reach: &Reach,
) -> Result<(), StoreError> {
    let member = member_on(tx, org, user)
        .await?
        .ok_or(StoreError::CallerEnded(CallerEnded::Removed))?;
    if member.role != *role {
        return Err(StoreError::Conflict(Conflict::RoleChanged));
    }
    let ceiling = match role_ceiling_on(tx, org, role).await {
        Ok(ceiling) => ceiling,
        Err(StoreError::NotFound) => return Err(StoreError::Conflict(Conflict::RoleChanged)),
        Err(other) => return Err(other),
    };
    if ceiling != reach.ceiling {
        return Err(StoreError::Conflict(Conflict::RoleChanged));
    }
    Ok(())
}

/// The format new audit records are sealed in (see [`AuditSealer::hash`]).
pub(super) const AUDIT_FORMAT: u8 = 2;

/// An organization's audit chain head, locked for the rest of the transaction.
struct ChainHead {
    org: OrgId,
    seq: u64,
    hash: [u8; 32],
}

/// Locks `org`'s row (see the module docs) and reads its chain head.
async fn lock_org(tx: &mut AnyConnection, org: OrgId) -> Result<ChainHead, StoreError> {
    let row = sqlx::query(
        "UPDATE orgs SET audit_seq = audit_seq WHERE id = $1 RETURNING audit_seq, audit_head",
    )
    .bind(org.to_bytes().to_vec())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(ChainHead {
        org,
        seq: u64_of(row.try_get::<i64, _>(0)?)?,
        hash: bytes32(row.try_get::<Vec<u8>, _>(1)?)?,
    })
}

/// Appends one sealed record (what `note` says, with the caller's `context`) to the chain and
/// moves the organization's head.
async fn append_audit(
    tx: &mut AnyConnection,
    sealer: &AuditSealer,
    head: &mut ChainHead,
    note: AuditNote,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut record = AuditRecord {
        org_id: head.org,
        seq: head.seq + 1,
        at: now,
        action: note.action,
        format: AUDIT_FORMAT,
        actor_key_id: context.actor,
        actor_user_id: context.actor_user,
        target_key_id: note.target,
        target_user_id: note.target_user,
        ip: context.ip.clone(),
        user_agent: context.user_agent.clone(),
        request_id: context.request_id.clone(),
        details: note.details,
        prev_hash: head.hash,
        hash: GENESIS,
    };
    record.hash = sealer.hash(&record);
    sqlx::query(
        "INSERT INTO audit_log (org_id, seq, at, action, actor_key_id, target_key_id, ip, \
         user_agent, request_id, details, prev_hash, hash, format, actor_user_id, \
         target_user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(record.org_id.to_bytes().to_vec())
    .bind(i64_of(record.seq)?)
    .bind(record.at.as_millis())
    .bind(record.action.as_str())
    .bind(record.actor_key_id.map(|id| id.to_bytes().to_vec()))
    .bind(record.target_key_id.map(|id| id.to_bytes().to_vec()))
    .bind(record.ip.clone())
    .bind(record.user_agent.clone())
    .bind(record.request_id.clone())
    .bind(record.details.to_string())
    .bind(record.prev_hash.to_vec())
    .bind(record.hash.to_vec())
    .bind(i64::from(record.format))
    .bind(record.actor_user_id.map(|id| id.to_bytes().to_vec()))
    .bind(record.target_user_id.map(|id| id.to_bytes().to_vec()))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE orgs SET audit_seq = $1, audit_head = $2 WHERE id = $3")
        .bind(i64_of(record.seq)?)
        .bind(record.hash.to_vec())
        .bind(head.org.to_bytes().to_vec())
        .execute(&mut *tx)
        .await?;
    head.seq = record.seq;
    head.hash = record.hash;
    Ok(())
}

/// Appends a change for the edges to the replication log, with the next sequence number.
async fn append_change(
    tx: &mut AnyConnection,
    org: OrgId,
    op: ChangeOp,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let row = sqlx::query("UPDATE feed SET seq = seq + 1 WHERE id = 1 RETURNING seq, chain")
        .fetch_one(&mut *tx)
        .await?;
    let seq = u64_of(row.try_get::<i64, _>(0)?)?;
    let previous = row
        .try_get::<Option<Vec<u8>>, _>(1)?
        .ok_or_else(|| StoreError::Corrupt("the feed has no chain".into()))?;
    let body = encode_changes(&[Change { seq, op }]);
    let chain = FeedChain::from_bytes(bytes32(previous)?).next_encoded(&body);
    sqlx::query("UPDATE feed SET chain = $1 WHERE id = 1")
        .bind(chain.to_bytes().to_vec())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO changes (seq, org_id, created_at, body, chain) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(i64_of(seq)?)
    .bind(org.to_bytes().to_vec())
    .bind(now.as_millis())
    .bind(body)
    .bind(chain.to_bytes().to_vec())
    .execute(&mut *tx)
    .await?;
    Ok(seq)
}
