//! Mutations of an organization's people, each one [`OrgMutation`] like a key mutation (the
//! organization locked, the change and its audit record in one transaction): roles,
//! invitations, joining, role changes, removal with the member's keys, key transfers and the
//! reconciliation of keys with their owners' ceilings.

use keyplane_shared::ids::{KeyId, OrgId, UserId};
use keyplane_shared::{ScopeSet, Timestamp};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::journal::{Mutation, OrgMutation};
use super::keys::{load_key, save_key};
use super::people::{id_bytes, member_on, members_on, role_ceiling_on, role_on};
use super::rows::{KEY_COLUMNS, key_from_row};
use crate::access::RoleName;
use crate::store::lifecycle::{self, AuditNote, RevokePlan};
use crate::store::people::{KeysOnRemoval, MemberRecord, Reconciliation, Removal, RoleRecord};
use crate::store::records::{AuditAction, AuditContext, KeyRecord, Revocation, RevocationReason};
use crate::store::{Conflict, StoreError};

pub(super) fn note(action: AuditAction, user: Option<UserId>, details: Value) -> AuditNote {
    AuditNote {
        action,
        target: None,
        target_user: user,
        details,
    }
}

pub(super) fn member_json(member: &MemberRecord) -> Value {
    json!({
        "user_id": member.user.id,
        "display_name": member.user.display_name,
        "email": member.user.email,
        "role": member.role.as_str(),
    })
}

pub(super) async fn owner_count(
    connection: &mut AnyConnection,
    org: OrgId,
) -> Result<i64, StoreError> {
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
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
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
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
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
        .audit(
            &store.sealer,
            note(AuditAction::RoleDeleted, None, details),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await
}

/// Gives `key` to `to` inside `mutation`, audited as `key_owner_changed`.
pub(super) async fn change_owner(
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

/// Sets a member's role, on `connection`.
pub(super) async fn set_role(
    connection: &mut AnyConnection,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE memberships SET role = $1, updated_at = $2 WHERE org_id = $3 AND user_id = $4",
    )
    .bind(role.as_str().to_owned())
    .bind(now.as_millis())
    .bind(id_bytes(org.to_bytes()))
    .bind(id_bytes(user.to_bytes()))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

pub(super) async fn change_role(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
    from: &RoleName,
    role: &RoleName,
    context: &AuditContext,
    now: Timestamp,
) -> Result<MemberRecord, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let before = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    if before.role != *from {
        return Err(StoreError::Conflict(Conflict::MemberChanged));
    }
    role_ceiling_on(mutation.connection(), org, role).await?;
    if before.role == *role {
        return Ok(before);
    }
    if before.role.is_owner() && owner_count(mutation.connection(), org).await? <= 1 {
        return Err(StoreError::Conflict(Conflict::LastOwner));
    }
    set_role(mutation.connection(), org, user, role, now).await?;
    let after = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    let details =
        json!({ "member": member_json(&after), "from": before.role.as_str(), "to": role.as_str() });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::MemberRoleChanged, Some(user), details),
            context,
            now,
        )
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
    holding: &RoleName,
    keys: KeysOnRemoval,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Removal, StoreError> {
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let member = member_on(mutation.connection(), org, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    if member.role != *holding {
        return Err(StoreError::Conflict(Conflict::MemberChanged));
    }
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
                    note: Some(format!(
                        "{} left the organization",
                        member.user.display_name
                    )),
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
    sqlx::query(
        "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND org_id = $3 AND ended_at IS NULL",
    )
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
        .audit(
            &store.sealer,
            note(AuditAction::MemberRemoved, Some(user), details),
            context,
            now,
        )
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
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
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
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let mut changed = Vec::new();
    let members: Vec<_> = members_on(mutation.connection(), org)
        .await?
        .into_iter()
        .filter(|member| owner.is_none_or(|owner| owner == member.user.id))
        .collect();
    if owner.is_some() && members.is_empty() {
        return Err(StoreError::NotFound);
    }
    for member in members {
        let ceiling = role_ceiling_on(mutation.connection(), org, &member.role).await?;
        for key in owned_keys(&mut mutation, org, member.user.id).await? {
            // A key still in a rotation's grace period works until its grace ends, but cannot
            // be edited: narrowing ends its grace (revokes it) and narrows its successor.
            let in_grace = match key.check_changeable(now) {
                Ok(()) => false,
                Err(Conflict::AlreadyRotated) => true,
                Err(_) => continue,
            };
            if ceiling.allows_all(&key.scopes) {
                continue;
            }
            let key = lifecycle::reach(Some(key), context)?;
            let (saved, audit) = match action {
                Reconciliation::Narrow if !in_grace => {
                    let changes = crate::store::records::KeyChanges {
                        scopes: Some(ceiling.narrow(&key.scopes)),
                        ..Default::default()
                    };
                    let edit = lifecycle::edit(&key, changes, now).map_err(StoreError::Conflict)?;
                    (save_key(&mut mutation, &edit.key, now).await?, edit.audit)
                }
                Reconciliation::Narrow | Reconciliation::Revoke => {
                    let revocation = Revocation {
                        reason: RevocationReason::Other,
                        note: Some(if in_grace {
                            "its scopes exceeded its owner's role (in a rotation's grace period)"
                                .into()
                        } else {
                            "its scopes exceeded its owner's role".into()
                        }),
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
