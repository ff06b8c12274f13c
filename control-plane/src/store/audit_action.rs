//! The actions the audit log records ([`AuditAction`]), with their labels in the API and the
//! database.

use serde::{Deserialize, Serialize};

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An organization and its first admin key were created.
    OrgCreated,
    /// A key was created.
    KeyCreated,
    /// A key was changed in place.
    KeyUpdated,
    /// A key was replaced by a new one.
    KeyRotated,
    /// A key was revoked (or a revoked key was revoked again).
    KeyRevoked,
    /// A key was removed from listings.
    KeyDeleted,
    /// A management request with a known key was refused.
    AuthFailed,
    /// A key was given to another owner.
    KeyOwnerChanged,
    /// Someone was invited to join the organization.
    MemberInvited,
    /// An invitation was revoked before it was used.
    InvitationRevoked,
    /// A user joined the organization (an invitation accepted, the first owner set up, or a
    /// host product's user seen for the first time).
    MemberAdded,
    /// A member's role changed.
    MemberRoleChanged,
    /// A member was removed (what happened to their keys is in the details).
    MemberRemoved,
    /// A custom role was created.
    RoleCreated,
    /// A role's scopes changed.
    RoleUpdated,
    /// A custom role was deleted.
    RoleDeleted,
    /// A one-time portal link was made for a member.
    PortalLinkCreated,
    /// The organization's branding changed.
    BrandingUpdated,
    /// A webhook endpoint was added.
    WebhookCreated,
    /// A webhook endpoint's URL, events, description or state changed.
    WebhookUpdated,
    /// A webhook endpoint's signing secret was replaced (the old one signs for 24 hours more).
    WebhookSecretRotated,
    /// A webhook endpoint was removed.
    WebhookDeleted,
    /// Keyplane disabled a webhook endpoint that kept failing.
    WebhookDisabled,
    /// The organization's expiry notice lead times changed.
    ExpiryNoticesUpdated,
}

impl AuditAction {
    /// The label used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OrgCreated => "org_created",
            AuditAction::KeyCreated => "key_created",
            AuditAction::KeyUpdated => "key_updated",
            AuditAction::KeyRotated => "key_rotated",
            AuditAction::KeyRevoked => "key_revoked",
            AuditAction::KeyDeleted => "key_deleted",
            AuditAction::AuthFailed => "auth_failed",
            AuditAction::KeyOwnerChanged => "key_owner_changed",
            AuditAction::MemberInvited => "member_invited",
            AuditAction::InvitationRevoked => "invitation_revoked",
            AuditAction::MemberAdded => "member_added",
            AuditAction::MemberRoleChanged => "member_role_changed",
            AuditAction::MemberRemoved => "member_removed",
            AuditAction::RoleCreated => "role_created",
            AuditAction::RoleUpdated => "role_updated",
            AuditAction::RoleDeleted => "role_deleted",
            AuditAction::PortalLinkCreated => "portal_link_created",
            AuditAction::BrandingUpdated => "branding_updated",
            AuditAction::WebhookCreated => "webhook_created",
            AuditAction::WebhookUpdated => "webhook_updated",
            AuditAction::WebhookSecretRotated => "webhook_secret_rotated",
            AuditAction::WebhookDeleted => "webhook_deleted",
            AuditAction::WebhookDisabled => "webhook_disabled",
            AuditAction::ExpiryNoticesUpdated => "expiry_notices_updated",
        }
    }

    /// Reads a stored label (the names [`AuditAction::as_str`] gives are serde's names too).
    pub fn from_label(label: &str) -> Option<Self> {
        use serde::de::value::{Error, StrDeserializer};
        Self::deserialize(StrDeserializer::<Error>::new(label)).ok()
    }
}
