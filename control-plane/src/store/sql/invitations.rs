//! Invitations: storing one (audited as `member_invited`), finding one by its token's digest,
//! listing an organization's pending ones, revoking one (audited as `invitation_revoked`),
//! and accepting one (the account made if new, the membership added, and for an
//! organization's first owner the keys nobody owned yet taken), in one transaction.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{InvitationId, OrgId, UserId};
use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::journal::OrgMutation;
use super::members::{change_owner, member_json, note, owner_count};
use super::people::{id_bytes, member_on, role_of};
use super::rows::{KEY_COLUMNS, bytes16, key_from_row};
use crate::access::RoleName;
use crate::store::people::{InvitationRecord, Joining, NewInvitation, UserRecord};
use crate::store::records::{AuditAction, AuditContext};
use crate::store::{Conflict, StoreError};

const INVITATION_COLUMNS: &str =
    "id, org_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

fn invitation_from_row(row: &sqlx::any::AnyRow) -> Result<InvitationRecord, StoreError> {
    Ok(InvitationRecord {
        id: InvitationId::from_bytes(bytes16(row.try_get("id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        email: row.try_get("email")?,
        role: role_of(&row.try_get::<String, _>("role")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        accepted_at: row.try_get::<Option<i64>, _>("accepted_at")?.map(Timestamp),
        invited_by: row
            .try_get::<Option<Vec<u8>>, _>("invited_by")?
            .map(|bytes| bytes16(bytes).map(UserId::from_bytes))
            .transpose()?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

pub(super) async fn create_invitation(
    store: &SqlStore,
    invitation: NewInvitation,
    context: &AuditContext,
    now: Timestamp,
) -> Result<InvitationRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, invitation.org, context, now).await?;
    if let Some(email) = &invitation.email {
        let member = sqlx::query(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 AND u.email = $2",
        )
        .bind(id_bytes(invitation.org.to_bytes()))
        .bind(email.clone())
        .fetch_optional(mutation.connection())
        .await?;
        if member.is_some() {
            return Err(StoreError::Conflict(Conflict::AlreadyMember));
        }
    }
    let sql = format!(
        "INSERT INTO invitations (id, org_id, email, role, token_digest, invited_by, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {INVITATION_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(invitation.id.to_bytes()))
        .bind(id_bytes(invitation.org.to_bytes()))
        .bind(invitation.email.clone())
        .bind(invitation.role.as_str().to_owned())
        .bind(invitation.token_digest.to_vec())
        .bind(invitation.invited_by.map(|id| id_bytes(id.to_bytes())))
        .bind(now.as_millis())
        .bind(invitation.expires_at.as_millis())
        .fetch_one(mutation.connection())
        .await?;
    let record = invitation_from_row(&row)?;
    let details = json!({
        "invitation_id": record.id,
        "email": record.email,
        "role": record.role.as_str(),
        "expires_at": record.expires_at.as_millis(),
    });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::MemberInvited, None, details),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(record)
}

pub(super) async fn invitation_by_token(
    store: &SqlStore,
    digest: &[u8; 32],
) -> Result<Option<InvitationRecord>, StoreError> {
    let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_digest = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(digest.to_vec())
        .fetch_optional(&store.pool)
        .await?
        .map(|row| invitation_from_row(&row))
        .transpose()
}

pub(super) async fn pending_invitations(
    store: &SqlStore,
    org: OrgId,
    now: Timestamp,
) -> Result<Vec<InvitationRecord>, StoreError> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 AND accepted_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(org.to_bytes()))
        .bind(now.as_millis())
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(invitation_from_row)
        .collect()
}

pub(super) async fn invitation(
    store: &SqlStore,
    org: OrgId,
    id: InvitationId,
) -> Result<Option<InvitationRecord>, StoreError> {
    invitation_on(&store.pool, org, id).await
}

/// The organization's invitation `id`, read with `executor` (the pool, or a mutation's
/// connection to read it under the organization's lock).
async fn invitation_on<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    org: OrgId,
    id: InvitationId,
) -> Result<Option<InvitationRecord>, StoreError> {
    let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1 AND org_id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(id.to_bytes()))
        .bind(id_bytes(org.to_bytes()))
        .fetch_optional(executor)
        .await?
        .map(|row| invitation_from_row(&row))
        .transpose()
}

pub(super) async fn revoke_invitation(
    store: &SqlStore,
    org: OrgId,
    id: InvitationId,
    context: &AuditContext,
    now: Timestamp,
) -> Result<InvitationRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let invitation = invitation_on(mutation.connection(), org, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    if invitation.accepted_at.is_some() {
        return Err(StoreError::Conflict(Conflict::InvitationUsed));
    }
    if invitation.revoked_at.is_some() {
        return Err(StoreError::Conflict(Conflict::InvitationRevoked));
    }
    sqlx::query(
        "UPDATE invitations SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND org_id = $4",
    )
    .bind(now.as_millis())
    .bind(context.actor_user.map(|user| id_bytes(user.to_bytes())))
    .bind(id_bytes(id.to_bytes()))
    .bind(id_bytes(org.to_bytes()))
    .execute(mutation.connection())
    .await?;
    let details = json!({
        "invitation_id": invitation.id,
        "email": invitation.email,
        "role": invitation.role.as_str(),
    });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::InvitationRevoked, None, details),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(InvitationRecord {
        revoked_at: Some(now),
        ..invitation
    })
}

pub(super) async fn insert_membership(
    connection: &mut AnyConnection,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(id_bytes(org.to_bytes()))
    .bind(id_bytes(user.to_bytes()))
    .bind(role.as_str().to_owned())
    .bind(now.as_millis())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

pub(super) async fn accept_invitation(
    store: &SqlStore,
    id: InvitationId,
    joining: Joining,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(UserRecord, OrgId), StoreError> {
    let row = sqlx::query("SELECT org_id FROM invitations WHERE id = $1")
        .bind(id_bytes(id.to_bytes()))
        .fetch_optional(&store.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let org = OrgId::from_bytes(bytes16(row.try_get(0)?)?);
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1");
    let invitation = invitation_from_row(
        &sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_bytes(id.to_bytes()))
            .fetch_one(mutation.connection())
            .await?,
    )?;
    if invitation.accepted_at.is_some() {
        return Err(StoreError::Conflict(Conflict::InvitationUsed));
    }
    if invitation.revoked_at.is_some() {
        return Err(StoreError::Conflict(Conflict::InvitationRevoked));
    }
    if now >= invitation.expires_at {
        return Err(StoreError::Conflict(Conflict::InvitationExpired));
    }
    // A custom role deleted since the invitation was sent: a member of it could do nothing.
    match super::people::role_ceiling_on(mutation.connection(), org, &invitation.role).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return Err(StoreError::Conflict(Conflict::InvitationRoleDeleted));
        }
        Err(other) => return Err(other),
    }
    let user_id = match joining {
        Joining::Existing(user) => user,
        Joining::New {
            id,
            email,
            display_name,
            password_hash,
        } => {
            sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(id_bytes(id.to_bytes()))
            .bind(email)
            .bind(display_name)
            .bind(password_hash)
            .bind(now.as_millis())
            .execute(mutation.connection())
            .await?;
            id
        }
    };
    if member_on(mutation.connection(), org, user_id)
        .await?
        .is_some()
    {
        return Err(StoreError::Conflict(Conflict::AlreadyMember));
    }
    let first_owner =
        invitation.role.is_owner() && owner_count(mutation.connection(), org).await? == 0;
    insert_membership(mutation.connection(), org, user_id, &invitation.role, now).await?;
    sqlx::query("UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3")
        .bind(now.as_millis())
        .bind(id_bytes(user_id.to_bytes()))
        .bind(id_bytes(id.to_bytes()))
        .execute(mutation.connection())
        .await?;
    let member = member_on(mutation.connection(), org, user_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut context = context.clone();
    context.actor_user = Some(user_id);
    let details = json!({ "member": member_json(&member), "invitation_id": invitation.id });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::MemberAdded, Some(user_id), details),
            &context,
            now,
        )
        .await?;
    if first_owner {
        // The first owner takes the keys made before anyone could own them (the first admin key).
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND owner_id IS NULL ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_bytes(org.to_bytes()))
            .fetch_all(mutation.connection())
            .await?;
        for row in rows {
            let key = key_from_row(&row)?;
            change_owner(store, &mut mutation, key, user_id, &context, now).await?;
        }
    }
    let user = super::people::user_on(mutation.connection(), user_id).await?;
    mutation.commit(&store.heads).await?;
    Ok((user, org))
}
