//! People: users, memberships, roles, sessions and invitations, and the storage operations on
//! them ([`PeopleStore`], a part of [`super::Store`]).
//!
//! Nothing secret is stored in plaintext here either: a password is its Argon2id PHC string,
//! a session or invitation token its SHA-256 digest. Membership and role changes are audited
//! in the organization's chain, in the same transaction as the change, like key actions; a
//! member's removal revokes or transfers their keys in that transaction too.

use async_trait::async_trait;
use keyplane_shared::ScopeSet;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{InvitationId, KeyId, OrgId, SessionId, UserId};

use super::StoreError;
use super::records::{AuditContext, KeyRecord};
use crate::access::{RoleName, ScopeCeiling};

/// How a member was judged before their role is set ([`PeopleStore::sync_member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgedMember<'a> {
    /// Not judged: the host product's token says what the user's own role is.
    Unjudged,
    /// Judged on their holding this role (`None`: not a member), by a caller setting another
    /// person's role.
    As(Option<&'a RoleName>),
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// Public id.
    pub id: UserId,
    /// Lowercased email (none for a host product's user who has none).
    pub email: Option<String>,
    /// Display name.
    pub display_name: String,
    /// A local account's Argon2id PHC string.
    pub password_hash: Option<String>,
    /// The host product that introduced the user, and its subject.
    pub external: Option<(String, String)>,
    /// When created.
    pub created_at: Timestamp,
}

/// A user as other records name them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    /// `usr_…`.
    #[schema(value_type = String)]
    pub id: UserId,
    /// Display name.
    pub display_name: String,
    /// Email, when known.
    pub email: Option<String>,
}

/// One organization a user belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The organization.
    pub org_id: OrgId,
    /// Its name.
    pub org_name: String,
    /// The user's role there.
    pub role: RoleName,
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    /// Who.
    pub user: UserSummary,
    /// Their role.
    pub role: RoleName,
    /// When they joined.
    pub joined_at: Timestamp,
}

/// A role as an organization has it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRecord {
    /// Its name.
    pub name: RoleName,
    /// The scopes its members' keys may hold.
    pub ceiling: ScopeCeiling,
    /// Whether it is built in (built-in roles cannot be deleted).
    pub builtin: bool,
    /// When an owner last changed it (`None`: as built in).
    pub updated_at: Option<Timestamp>,
}

/// Where a session is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Keyplane's own dashboard (`SameSite=Strict` cookie).
    Dashboard,
    /// The portal embedded in a host product's page (`SameSite=None; Partitioned`).
    Portal,
}

impl SessionKind {
    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Dashboard => "dashboard",
            SessionKind::Portal => "portal",
        }
    }
}

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Public id.
    pub id: SessionId,
    /// SHA-256 of the cookie's token.
    pub token_digest: [u8; 32],
    /// Whose.
    pub user: UserId,
    /// The organization it acts in.
    pub org: OrgId,
    /// Where it is used.
    pub kind: SessionKind,
    /// Its absolute end.
    pub expires_at: Timestamp,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Client `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// A portal session's way back to the host product's page.
    pub return_url: Option<String>,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Public id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// The organization it acts in.
    pub org_id: OrgId,
    /// Where it is used.
    pub kind: SessionKind,
    /// When signed in.
    pub created_at: Timestamp,
    /// Last request.
    pub last_seen_at: Timestamp,
    /// Absolute end.
    pub expires_at: Timestamp,
    /// When it was signed out.
    pub ended_at: Option<Timestamp>,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Client `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// A portal session's way back to the host product's page ("Back to …").
    pub return_url: Option<String>,
}

/// An invitation to store.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// Public id.
    pub id: InvitationId,
    /// Into which organization.
    pub org: OrgId,
    /// For whom (none: the first owner's setup link).
    pub email: Option<String>,
    /// With which role.
    pub role: RoleName,
    /// SHA-256 of the link's token.
    pub token_digest: [u8; 32],
    /// Who invited (none: the first start or the CLI).
    pub invited_by: Option<UserId>,
    /// When the link stops working.
    pub expires_at: Timestamp,
}

/// A stored invitation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationRecord {
    /// Public id.
    pub id: InvitationId,
    /// Into which organization.
    pub org_id: OrgId,
    /// For whom.
    pub email: Option<String>,
    /// With which role.
    pub role: RoleName,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used.
    pub accepted_at: Option<Timestamp>,
    /// Who invited (none: the first start or the CLI).
    pub invited_by: Option<UserId>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Who accepts an invitation.
#[derive(Debug, Clone)]
pub enum Joining {
    /// A user who already has an account (their password was checked).
    Existing(UserId),
    /// A new local account.
    New {
        /// Public id.
        id: UserId,
        /// Lowercased email.
        email: String,
        /// Display name.
        display_name: String,
        /// Argon2id PHC string.
        password_hash: String,
    },
}

/// What happens to a removed member's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysOnRemoval {
    /// Every active key they own is revoked with reason `employee_departure`.
    Revoke,
    /// Every key they own goes to this member.
    TransferTo(UserId),
}

/// What removing a member did to their keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Keys revoked.
    pub revoked: Vec<KeyId>,
    /// Keys transferred.
    pub transferred: Vec<KeyId>,
}

/// What to do with keys whose scopes exceed their owner's ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciliation {
    /// Cut their scopes down to the owner's ceiling.
    Narrow,
    /// Revoke them.
    Revoke,
}

/// A host product's user, from a verified token.
#[derive(Debug, Clone)]
pub struct HostUser {
    /// The token's issuer.
    pub issuer: String,
    /// Its subject.
    pub subject: String,
    /// Display name.
    pub display_name: String,
    /// Lowercased email, if the token has one.
    pub email: Option<String>,
}

/// The storage operations on people.
#[async_trait]
pub trait PeopleStore: Send + Sync + 'static {
    /// One user.
    async fn user(&self, id: UserId) -> Result<UserRecord, StoreError>;

    /// The local account with this (lowercased) email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Every organization the user belongs to, oldest membership first.
    async fn memberships(&self, user: UserId) -> Result<Vec<Membership>, StoreError>;

    /// The user's membership of `org`.
    async fn member(&self, org: OrgId, user: UserId) -> Result<Option<MemberRecord>, StoreError>;

    /// Every member of `org`, oldest first.
    async fn members(&self, org: OrgId) -> Result<Vec<MemberRecord>, StoreError>;

    /// The users with these ids (unknown ids are left out).
    async fn user_summaries(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, StoreError>;

    /// An organization's name, if it exists.
    async fn org_name(&self, org: OrgId) -> Result<Option<String>, StoreError>;

    /// Every organization, oldest first, with its number of members (for operators).
    async fn organizations(&self) -> Result<Vec<(super::OrgRecord, u64)>, StoreError>;

    /// The organization created first (with its admin key, at first start): its owners are the
    /// deployment's operators.
    async fn first_org(&self) -> Result<Option<OrgId>, StoreError>;

    /// Every role of `org`: the built-in ones, then its own, by name.
    async fn roles(&self, org: OrgId) -> Result<Vec<RoleRecord>, StoreError>;

    /// The ceiling of `role` in `org`; `NotFound` for a custom role it does not have.
    async fn role_ceiling(&self, org: OrgId, role: &RoleName) -> Result<ScopeCeiling, StoreError>;

    /// Creates a custom role, or sets a custom role's or the developer role's scopes.
    async fn put_role(
        &self,
        org: OrgId,
        role: &RoleName,
        scopes: &ScopeSet,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<RoleRecord, StoreError>;

    /// Deletes a custom role nobody holds (`Conflict::RoleInUse` otherwise).
    async fn delete_role(
        &self,
        org: OrgId,
        role: &RoleName,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Stores an invitation (audited as `member_invited`).
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<InvitationRecord, StoreError>;

    /// The invitation with this token digest, used or not.
    async fn invitation_by_token(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<InvitationRecord>, StoreError>;

    /// The organization's pending invitations: neither used nor revoked, and not expired at
    /// `now`; oldest first.
    async fn pending_invitations(
        &self,
        org: OrgId,
        now: Timestamp,
    ) -> Result<Vec<InvitationRecord>, StoreError>;

    /// The organization's invitation `id`, in whatever state; `None` when it has none with
    /// this id (another organization's is not found either).
    async fn invitation(
        &self,
        org: OrgId,
        id: InvitationId,
    ) -> Result<Option<InvitationRecord>, StoreError>;

    /// Revokes an unused invitation, so its link stops working (audited as
    /// `invitation_revoked`). Refused when it was used (`Conflict::InvitationUsed`) or revoked
    /// already (`Conflict::InvitationRevoked`); `NotFound` when the organization has none with
    /// this id. An expired one may be revoked.
    async fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<InvitationRecord, StoreError>;

    /// Uses an invitation: makes the account if new, adds the membership (audited as
    /// `member_added`); the first owner of an organization also takes its keys that have no
    /// owner yet. Refused when used, revoked or expired (checked again under the lock).
    async fn accept_invitation(
        &self,
        id: InvitationId,
        joining: Joining,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(UserRecord, OrgId), StoreError>;

    /// Changes a member's role from `from` (the role the caller's right to change it was
    /// judged on: [`Conflict::MemberChanged`](super::Conflict::MemberChanged) if the member
    /// holds another by the time the organization is locked) to `role`; the last owner cannot
    /// stop being one.
    async fn change_role(
        &self,
        org: OrgId,
        user: UserId,
        from: &RoleName,
        role: &RoleName,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<MemberRecord, StoreError>;

    /// Removes a member who holds `holding` (the role the caller's right to remove them was
    /// judged on: [`Conflict::MemberChanged`](super::Conflict::MemberChanged) if they hold
    /// another by the time the organization is locked), revoking or transferring their keys,
    /// in one transaction (one audit record per key, and one for the removal); the last owner
    /// cannot be removed.
    async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        holding: &RoleName,
        keys: KeysOnRemoval,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Removal, StoreError>;

    /// Gives a key to another member (who must be one).
    async fn transfer_key(
        &self,
        org: OrgId,
        key: KeyId,
        to: UserId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<KeyRecord, StoreError>;

    /// Narrows or revokes every active key of `org` (of `owner` only, if given) whose scopes
    /// exceed its owner's current ceiling; the keys changed. [`StoreError::NotFound`] when
    /// `owner` is not a member of `org`.
    async fn reconcile_keys(
        &self,
        org: OrgId,
        owner: Option<UserId>,
        action: Reconciliation,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Vec<KeyRecord>, StoreError>;

    /// Stores a new session.
    async fn create_session(
        &self,
        session: NewSession,
        now: Timestamp,
    ) -> Result<SessionRecord, StoreError>;

    /// The session with this token digest, with its user (ended or not: the caller checks).
    async fn session_by_token(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError>;

    /// Notes a request on a session (its idle expiry starts again).
    async fn touch_session(&self, id: SessionId, now: Timestamp) -> Result<(), StoreError>;

    /// Ends one of the user's sessions; whether it was active.
    async fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Ends every session of the user but `keep`; how many it ended.
    async fn end_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// The user's sessions not ended, newest first.
    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError>;

    /// Deletes every session whose absolute expiry is before `before`, ended or not (past it
    /// its cookie is refused either way; a session lives 12 hours at most); how many.
    async fn delete_spent_sessions(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Sets a local account's password, ending its other sessions.
    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The user a host product's token names, created on first sight, its name and email
    /// kept up to date.
    async fn host_user(&self, user: HostUser, now: Timestamp) -> Result<UserRecord, StoreError>;

    /// The Keyplane organization linked to a host product's organization.
    async fn linked_org(
        &self,
        issuer: &str,
        external_id: &str,
    ) -> Result<Option<OrgId>, StoreError>;

    /// Creates an organization for a host product's organization and links them (for an
    /// issuer with provisioning enabled); an existing link wins a race.
    async fn provision_org(
        &self,
        issuer: &str,
        external_id: &str,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<OrgId, StoreError>;

    /// Makes the user a member of `org` with `role`, or changes their role to it, as a host
    /// product's token says (audited when anything changed); whether anything changed. With
    /// [`JudgedMember::As`], only if the user stands in `org` as the caller's right to set
    /// their role was judged on ([`Conflict::MemberChanged`](super::Conflict::MemberChanged)
    /// if not, once the organization is locked).
    async fn sync_member(
        &self,
        org: OrgId,
        user: UserId,
        role: &RoleName,
        judged: JudgedMember<'_>,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}
