//! [`PeopleStore`] on the SQL store: each operation delegates to `people.rs` (reads and user
//! rows), `members.rs` (audited mutations of an organization's people) or `sessions.rs`.

use async_trait::async_trait;
use keyplane_shared::ids::{InvitationId, KeyId, OrgId, SessionId, UserId};
use keyplane_shared::{ScopeSet, Timestamp};

use super::{SqlStore, host_orgs, invitations, members, people, sessions};
use crate::access::{RoleName, ScopeCeiling};
use crate::store::StoreError;
use crate::store::people::*;
use crate::store::records::{AuditContext, KeyRecord, OrgRecord};

#[async_trait]
impl PeopleStore for SqlStore {
    async fn user(&self, id: UserId) -> Result<UserRecord, StoreError> {
        people::user(self, id).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        people::user_by_email(self, email).await
    }

    async fn memberships(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        people::memberships(self, user).await
    }

    async fn member(&self, org: OrgId, user: UserId) -> Result<Option<MemberRecord>, StoreError> {
        people::member(self, org, user).await
    }

    async fn members(&self, org: OrgId) -> Result<Vec<MemberRecord>, StoreError> {
        people::members(self, org).await
    }

    async fn user_summaries(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, StoreError> {
        people::user_summaries(self, ids).await
    }

    async fn org_name(&self, org: OrgId) -> Result<Option<String>, StoreError> {
        people::org_name(self, org).await
    }

    async fn organizations(&self) -> Result<Vec<(OrgRecord, u64)>, StoreError> {
        people::organizations(self).await
    }

    async fn first_org(&self) -> Result<Option<OrgId>, StoreError> {
        people::first_org(self).await
    }

    async fn roles(&self, org: OrgId) -> Result<Vec<RoleRecord>, StoreError> {
        people::roles(self, org).await
    }

    async fn role_ceiling(&self, org: OrgId, role: &RoleName) -> Result<ScopeCeiling, StoreError> {
        people::role_ceiling(self, org, role).await
    }

    async fn put_role(
        &self,
        org: OrgId,
        role: &RoleName,
        scopes: &ScopeSet,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<RoleRecord, StoreError> {
        members::put_role(self, org, role, scopes, context, now).await
    }

    async fn delete_role(
        &self,
        org: OrgId,
        role: &RoleName,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        members::delete_role(self, org, role, context, now).await
    }

    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<InvitationRecord, StoreError> {
        invitations::create_invitation(self, invitation, context, now).await
    }

    async fn invitation_by_token(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<InvitationRecord>, StoreError> {
        invitations::invitation_by_token(self, digest).await
    }

    async fn pending_invitations(
        &self,
        org: OrgId,
        now: Timestamp,
    ) -> Result<Vec<InvitationRecord>, StoreError> {
        invitations::pending_invitations(self, org, now).await
    }

    async fn invitation(
        &self,
        org: OrgId,
        id: InvitationId,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        invitations::invitation(self, org, id).await
    }

    async fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<InvitationRecord, StoreError> {
        invitations::revoke_invitation(self, org, id, context, now).await
    }

    async fn accept_invitation(
        &self,
        id: InvitationId,
        joining: Joining,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(UserRecord, OrgId), StoreError> {
        invitations::accept_invitation(self, id, joining, context, now).await
    }

    async fn change_role(
        &self,
        org: OrgId,
        user: UserId,
        from: &RoleName,
        role: &RoleName,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<MemberRecord, StoreError> {
        members::change_role(self, org, user, from, role, context, now).await
    }

    async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        holding: &RoleName,
        keys: KeysOnRemoval,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Removal, StoreError> {
        members::remove_member(self, org, user, holding, keys, context, now).await
    }

    async fn transfer_key(
        &self,
        org: OrgId,
        key: KeyId,
        to: UserId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError> {
        members::transfer_key(self, org, key, to, context, now).await
    }

    async fn reconcile_keys(
        &self,
        org: OrgId,
        owner: Option<UserId>,
        action: Reconciliation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        members::reconcile_keys(self, org, owner, action, context, now).await
    }

    async fn create_session(
        &self,
        session: NewSession,
        now: Timestamp,
    ) -> Result<SessionRecord, StoreError> {
        sessions::create(self, session, now).await
    }

    async fn session_by_token(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        sessions::by_token(self, digest).await
    }

    async fn touch_session(&self, id: SessionId, now: Timestamp) -> Result<(), StoreError> {
        sessions::touch(self, id, now).await
    }

    async fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        sessions::end(self, user, id, now).await
    }

    async fn end_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        sessions::end_all(self, user, keep, now).await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
        sessions::of_user(self, user).await
    }

    async fn delete_spent_sessions(&self, before: Timestamp) -> Result<u64, StoreError> {
        sessions::delete_spent(self, before).await
    }

    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sessions::set_password(self, user, password_hash, keep, now).await
    }

    async fn host_user(&self, user: HostUser, now: Timestamp) -> Result<UserRecord, StoreError> {
        people::host_user(self, user, now).await
    }

    async fn linked_org(
        &self,
        issuer: &str,
        external_id: &str,
    ) -> Result<Option<OrgId>, StoreError> {
        people::linked_org(self, issuer, external_id).await
    }

    async fn provision_org(
        &self,
        issuer: &str,
        external_id: &str,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<OrgId, StoreError> {
        host_orgs::provision_org(self, issuer, external_id, context, now).await
    }

    async fn sync_member(
        &self,
        org: OrgId,
        user: UserId,
        role: &RoleName,
        judged: JudgedMember<'_>,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        host_orgs::sync_member(self, org, user, role, judged, context, now).await
    }
}
