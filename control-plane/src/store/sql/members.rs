//! Mutations of an organization's people, each one [`OrgMutation`] like a key mutation (the
//! organization locked, the change and its audit record in one transaction): roles,
//! invitations, joining, role changes, removal with the member's keys, key transfers and the
//! reconciliation of keys with their owners' ceilings.

use keyplane_shared::ids::{InvitationId, KeyId, OrgId, UserId};
use keyplane_shared::{ScopeSet, Timestamp};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::journal::{Mutation, OrgMutation};
use super::keys::{load_key, save_key};
use super::people::{id_bytes, member_on, members_on, role_ceiling_on, role_of, role_on};
use super::rows::{KEY_COLUMNS, bytes16, key_from_row};
use crate::access::RoleName;
use crate::store::audit_chain::GENESIS;
use crate::store::lifecycle::{self, AuditNote, RevokePlan};
use crate::store::people::{
    InvitationRecord, Joining, KeysOnRemoval, MemberRecord, NewInvitation, Reconciliation,
    Removal, RoleRecord, UserRecord,
};
use crate::store::records::{
    AuditAction, AuditContext, KeyRecord, Revocation, RevocationReason,
};
use crate::store::{Conflict, StoreError};

fn note(action: AuditAction, user: Option<UserId>, details: Value) -> AuditNote {
    AuditNote {
        action,
        target: None,
        target_user: user,
        details,
    }
}

fn member_json(member: &MemberRecord) -> Value {
    json!({
        "user_id": member.user.id,
        "display_name": member.user.display_name,
        "email": member.user.email,
        "role": member.role.as_str(),
    })
}

async fn owner_count(connection: &mut AnyConnection, org: OrgId) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner'")
        .bind(id_bytes(org.to_bytes()))
        .fetch_one(&mut *connection)
        .await?;
    Ok(row.try_get(0)?)
}

pub(super) async fn put_role(
    store: &SqlStore,
    org: OrgId,
    role: &RoleName,
    scopes: &ScopeSet,
    context: &AuditContext,
    now: Timestamp,
) -> Result<RoleRecord, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let before = role_on(mutation.connection(), org, role).await.ok();
    sqlx::query(
        "INSERT INTO roles (org_id, name, scopes, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (org_id, name) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at",
    )
    .bind(id_bytes(org.to_bytes()))
    .bind(role.as_str().to_owned())
    .bind(scopes.to_string())
    .bind(now.as_millis())
    .execute(mutation.connection())
    .await?;
    let after = role_on(mutation.connection(), org, role).await?;
    let (action, details) = match before {
        Some(before) => (
            AuditAction::RoleUpdated,
            json!({ "role": role.as_str(), "from": before.ceiling.describe(), "to": after.ceiling.describe() }),
        ),
        None => (
            AuditAction::RoleCreated,
            json!({ "role": role.as_str(), "scopes": scopes }),
        ),
    };
    mutation
        .audit(&store.sealer, note(action, None, details), context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(after)
}

pub(super) async fn delete_role(
    store: &SqlStore,
    org: OrgId,
    role: &RoleName,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let held = sqlx::query("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = $2")
        .bind(id_bytes(org.to_bytes()))
        .bind(role.as_str().to_owned())
        .fetch_one(mutation.connection())
        .await?
        .try_get::<i64, _>(0)?;
    if held > 0 {
        return Err(StoreError::Conflict(Conflict::RoleInUse));
    }
    let deleted = sqlx::query("DELETE FROM roles WHERE org_id = $1 AND name = $2")
        .bind(id_bytes(org.to_bytes()))
        .bind(role.as_str().to_owned())
        .execute(mutation.connection())
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let details = json!({ "role": role.as_str() });
    mutation
        .audit(&store.sealer, note(AuditAction::RoleDeleted, None, details), context, now)
        .await?;
    mutation.commit(&store.heads).await
}

const INVITATION_COLUMNS: &str = "id, org_id, email, role, created_at, expires_at, accepted_at";

fn invitation_from_row(row: &sqlx::any::AnyRow) -> Result<InvitationRecord, StoreError> {
    Ok(InvitationRecord {
        id: InvitationId::from_bytes(bytes16(row.try_get("id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        email: row.try_get("email")?,
        role: role_of(&row.try_get::<String, _>("role")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        accepted_at: row.try_get::<Option<i64>, _>("accepted_at")?.map(Timestamp),
    })
}

pub(super) async fn create_invitation(
    store: &SqlStore,
    invitation: NewInvitation,
    context: &AuditContext,
    now: Timestamp,
) -> Result<InvitationRecord, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, invitation.org).await?;
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
        .audit(&store.sealer, note(AuditAction::MemberInvited, None, details), context, now)
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

async fn insert_membership(
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
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
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
    if now >= invitation.expires_at {
        return Err(StoreError::Conflict(Conflict::InvitationExpired));
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
    if member_on(mutation.connection(), org, user_id).await?.is_some() {
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
        .audit(&store.sealer, note(AuditAction::MemberAdded, Some(user_id), details), &context, now)
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

/// Gives `key` to `to` inside `mutation`, audited as `key_owner_changed`.
async fn change_owner(
    store: &SqlStore,
    mutation: &mut OrgMutation,
    mut key: KeyRecord,
    to: UserId,
    context: &AuditContext,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let from = key.owner_id;
    key.owner_id = Some(to);
    let saved = save_key(mutation, &key, now).await?;
    let audit = AuditNote {
        action: AuditAction::KeyOwnerChanged,
        target: Some(saved.id),
        target_user: Some(to),
        details: json!({ "from": from, "to": to }),
    };
    mutation.audit(&store.sealer, audit, context, now).await?;
    Ok(saved)
}

pub(super) async fn change_role(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    context: &AuditContext,
    now: Timestamp,
) -> Result<MemberRecord, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let before = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    role_ceiling_on(mutation.connection(), org, role).await?;
    if before.role == *role {
        return Ok(before);
    }
    if before.role.is_owner() && owner_count(mutation.connection(), org).await? <= 1 {
        return Err(StoreError::Conflict(Conflict::LastOwner));
    }
    sqlx::query("UPDATE memberships SET role = $1, updated_at = $2 WHERE org_id = $3 AND user_id = $4")
        .bind(role.as_str().to_owned())
        .bind(now.as_millis())
        .bind(id_bytes(org.to_bytes()))
        .bind(id_bytes(user.to_bytes()))
        .execute(mutation.connection())
        .await?;
    let after = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    let details = json!({ "member": member_json(&after), "from": before.role.as_str(), "to": role.as_str() });
    mutation
        .audit(&store.sealer, note(AuditAction::MemberRoleChanged, Some(user), details), context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(after)
}

/// The keys `owner` owns in `org` that are not deleted, oldest first, read in `mutation`.
async fn owned_keys(
    mutation: &mut Mutation,
    org: OrgId,
    owner: UserId,
) -> Result<Vec<KeyRecord>, StoreError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND owner_id = $2 \
         AND deleted_at IS NULL ORDER BY created_at, id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(org.to_bytes()))
        .bind(id_bytes(owner.to_bytes()))
        .fetch_all(mutation.connection())
        .await?;
    rows.iter().map(key_from_row).collect()
}

pub(super) async fn remove_member(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
    keys: KeysOnRemoval,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Removal, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let member = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    if member.role.is_owner() && owner_count(mutation.connection(), org).await? <= 1 {
        return Err(StoreError::Conflict(Conflict::LastOwner));
    }
    if let KeysOnRemoval::TransferTo(to) = keys
        && (to == user || member_on(mutation.connection(), org, to).await?.is_none())
    {
        return Err(StoreError::Conflict(Conflict::NotAMember));
    }
    let mut removal = Removal::default();
    for key in owned_keys(&mut mutation, org, user).await? {
        match keys {
            KeysOnRemoval::Revoke => {
                let revocation = Revocation {
                    reason: RevocationReason::EmployeeDeparture,
                    note: Some(format!("{} left the organization", member.user.display_name)),
                };
                if let RevokePlan::Revoke(transition) = lifecycle::revoke(key, revocation, now) {
                    let saved = save_key(&mut mutation, &transition.key, now).await?;
                    mutation
                        .audit(&store.sealer, transition.audit, context, now)
                        .await?;
                    removal.revoked.push(saved.id);
                }
            }
            KeysOnRemoval::TransferTo(to) => {
                let saved = change_owner(store, &mut mutation, key, to, context, now).await?;
                removal.transferred.push(saved.id);
            }
        }
    }
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(id_bytes(org.to_bytes()))
        .bind(id_bytes(user.to_bytes()))
        .execute(mutation.connection())
        .await?;
    // Their sessions in this organization end with the membership.
    sqlx::query("UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND org_id = $3 AND ended_at IS NULL")
        .bind(now.as_millis())
        .bind(id_bytes(user.to_bytes()))
        .bind(id_bytes(org.to_bytes()))
        .execute(mutation.connection())
        .await?;
    let details = json!({
        "member": member_json(&member),
        "keys": match keys { KeysOnRemoval::Revoke => "revoke", KeysOnRemoval::TransferTo(_) => "transfer" },
        "transferred_to": match keys { KeysOnRemoval::TransferTo(to) => Some(to), KeysOnRemoval::Revoke => None },
        "revoked": removal.revoked,
        "transferred": removal.transferred,
    });
    mutation
        .audit(&store.sealer, note(AuditAction::MemberRemoved, Some(user), details), context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(removal)
}

pub(super) async fn transfer_key(
    store: &SqlStore,
    org: OrgId,
    id: KeyId,
    to: UserId,
    context: &AuditContext,
    now: Timestamp,
) -> Result<KeyRecord, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let key = lifecycle::reach(load_key(mutation.connection(), org, id).await?, context)?;
    if member_on(mutation.connection(), org, to).await?.is_none() {
        return Err(StoreError::Conflict(Conflict::NotAMember));
    }
    if key.owner_id == Some(to) {
        return Ok(key);
    }
    let saved = change_owner(store, &mut mutation, key, to, context, now).await?;
    mutation.commit(&store.heads).await?;
    Ok(saved)
}

pub(super) async fn reconcile_keys(
    store: &SqlStore,
    org: OrgId,
    owner: Option<UserId>,
    action: Reconciliation,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Vec<KeyRecord>, StoreError> {
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let mut changed = Vec::new();
    for member in members_on(mutation.connection(), org).await? {
        if owner.is_some_and(|owner| owner != member.user.id) {
            continue;
        }
        let ceiling = role_ceiling_on(mutation.connection(), org, &member.role).await?;
        for key in owned_keys(&mut mutation, org, member.user.id).await? {
            if key.check_changeable(now).is_err() || ceiling.allows_all(&key.scopes) {
                continue;
            }
            let key = lifecycle::reach(Some(key), context)?;
            let (saved, audit) = match action {
                Reconciliation::Narrow => {
                    let changes = crate::store::records::KeyChanges {
                        scopes: Some(ceiling.narrow(&key.scopes)),
                        ..Default::default()
                    };
                    let edit = lifecycle::edit(&key, changes, now).map_err(StoreError::Conflict)?;
                    (save_key(&mut mutation, &edit.key, now).await?, edit.audit)
                }
                Reconciliation::Revoke => {
                    let revocation = Revocation {
                        reason: RevocationReason::Other,
                        note: Some("its scopes exceeded its owner's role".into()),
                    };
                    match lifecycle::revoke(key, revocation, now) {
                        RevokePlan::Revoke(transition) => (
                            save_key(&mut mutation, &transition.key, now).await?,
                            transition.audit,
                        ),
                        RevokePlan::AlreadyRevoked { .. } => continue,
                    }
                }
            };
            mutation.audit(&store.sealer, audit, context, now).await?;
            changed.push(saved);
        }
    }
    mutation.commit(&store.heads).await?;
    Ok(changed)
}

pub(super) async fn provision_org(
    store: &SqlStore,
    issuer: &str,
    external_id: &str,
    context: &AuditContext,
    now: Timestamp,
) -> Result<OrgId, StoreError> {
    let id = OrgId::generate().map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let mut mutation = Mutation::begin(&store.pool).await?;
    let name: String = external_id.chars().take(100).collect();
    sqlx::query(
        "INSERT INTO orgs (id, name, created_at, audit_seq, audit_head) VALUES ($1, $2, $3, 0, $4)",
    )
    .bind(id_bytes(id.to_bytes()))
    .bind(name.clone())
    .bind(now.as_millis())
    .bind(GENESIS.to_vec())
    .execute(mutation.connection())
    .await?;
    let linked = sqlx::query(
        "INSERT INTO org_links (issuer, external_id, org_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(issuer.to_owned())
    .bind(external_id.to_owned())
    .bind(id_bytes(id.to_bytes()))
    .bind(now.as_millis())
    .execute(mutation.connection())
    .await?;
    if linked.rows_affected() == 0 {
        // Another request provisioned it first: use theirs (this transaction is dropped).
        drop(mutation);
        return super::people::linked_org(store, issuer, external_id)
            .await?
            .ok_or(StoreError::NotFound);
    }
    let mut mutation = OrgMutation::lock(mutation, id).await?;
    let details = json!({ "org_name": name, "issuer": issuer, "external_id": external_id });
    mutation
        .audit(&store.sealer, note(AuditAction::OrgCreated, None, details), context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(id)
}

pub(super) async fn sync_member(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    context: &AuditContext,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if let Some(member) = super::people::member(store, org, user).await?
        && member.role == *role
    {
        return Ok(false);
    }
    let mut mutation = OrgMutation::begin(&store.pool, org).await?;
    let before = member_on(mutation.connection(), org, user).await?;
    let audit = match before {
        Some(before) if before.role == *role => return Ok(false),
        Some(before) => {
            sqlx::query("UPDATE memberships SET role = $1, updated_at = $2 WHERE org_id = $3 AND user_id = $4")
                .bind(role.as_str().to_owned())
                .bind(now.as_millis())
                .bind(id_bytes(org.to_bytes()))
                .bind(id_bytes(user.to_bytes()))
                .execute(mutation.connection())
                .await?;
            (AuditAction::MemberRoleChanged, json!({ "from": before.role.as_str(), "to": role.as_str(), "source": "host_token" }))
        }
        None => {
            insert_membership(mutation.connection(), org, user, role, now).await?;
            (AuditAction::MemberAdded, json!({ "role": role.as_str(), "source": "host_token" }))
        }
    };
    mutation
        .audit(&store.sealer, note(audit.0, Some(user), audit.1), context, now)
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(true)
}
