//! The host products' organizations and members: creating and linking an organization for a
//! provisioning issuer, and keeping a member's role as the host's token says.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, UserId};
use serde_json::json;

use super::SqlStore;
use super::invitations::insert_membership;
use super::journal::{Mutation, OrgMutation};
use super::members::{note, set_role};
use super::people::{id_bytes, member_on};
use crate::access::RoleName;
use crate::store::audit_chain::GENESIS;
use crate::store::records::{AuditAction, AuditContext};
use crate::store::{Conflict, JudgedMember, StoreError};

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
    let mut mutation = OrgMutation::lock_new(store, mutation, id).await?;
    let details = json!({ "org_name": name, "issuer": issuer, "external_id": external_id });
    mutation
        .audit(
            &store.sealer,
            note(AuditAction::OrgCreated, None, details),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(id)
}

pub(super) async fn sync_member(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
    role: &RoleName,
    judged: JudgedMember<'_>,
    context: &AuditContext,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if let Some(member) = super::people::member(store, org, user).await?
        && member.role == *role
    {
        return Ok(false);
    }
    let mut mutation = OrgMutation::begin_for(store, org, context, now).await?;
    let before = member_on(mutation.connection(), org, user).await?;
    if let JudgedMember::As(judged) = judged
        && before.as_ref().map(|member| &member.role) != judged
    {
        return Err(StoreError::Conflict(Conflict::MemberChanged));
    }
    let audit = match before {
        Some(before) if before.role == *role => return Ok(false),
        Some(before) => {
            set_role(mutation.connection(), org, user, role, now).await?;
            (
                AuditAction::MemberRoleChanged,
                json!({ "from": before.role.as_str(), "to": role.as_str(), "source": "host_token" }),
            )
        }
        None => {
            insert_membership(mutation.connection(), org, user, role, now).await?;
            (
                AuditAction::MemberAdded,
                json!({ "role": role.as_str(), "source": "host_token" }),
            )
        }
    };
    mutation
        .audit(
            &store.sealer,
            note(audit.0, Some(user), audit.1),
            context,
            now,
        )
        .await?;
    mutation.commit(&store.heads).await?;
    Ok(true)
}
