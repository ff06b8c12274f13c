//! The embedded portal's storage ([`PortalStore`], a part of [`super::Store`]): one-time portal
//! links and each organization's branding.
//!
//! A link's token is never stored, only its SHA-256 digest; using a link is one conditional
//! update, so two requests racing with the same token cannot both succeed. Branding changes and
//! link creation are audited in the organization's chain, in the same transaction.

use async_trait::async_trait;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, UserId};

use super::StoreError;
use super::records::AuditContext;
use crate::access::RoleName;

/// A portal link to store.
#[derive(Debug, Clone)]
pub struct NewPortalLink {
    /// SHA-256 of the link's token.
    pub token_digest: [u8; 32],
    /// The organization the portal session will act in.
    pub org: OrgId,
    /// The member it will act as.
    pub user: UserId,
    /// The member's role when the link was made (for the audit record).
    pub role: RoleName,
    /// Where the portal's "Back to …" leads.
    pub return_url: String,
    /// When the link stops working.
    pub expires_at: Timestamp,
}

/// A portal link just used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedPortalLink {
    /// The organization.
    pub org_id: OrgId,
    /// The member.
    pub user_id: UserId,
    /// Where the portal's "Back to …" leads.
    pub return_url: String,
}

/// An organization's branding, as the portal and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    /// The name shown (by default the organization's name).
    pub display_name: String,
    /// An `https://` URL of the logo, if set.
    pub logo_url: Option<String>,
    /// The accent colour, `#rrggbb`, if set.
    pub accent_color: Option<String>,
    /// The origins (`https://host[:port]`) allowed to frame the portal; none by default.
    pub frame_ancestors: Vec<String>,
    /// When it was last changed (`None`: never, these are the defaults).
    pub updated_at: Option<Timestamp>,
}

/// Branding to store (already validated: see [`crate::portal::branding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandingUpdate {
    /// The name shown.
    pub display_name: String,
    /// The logo's URL.
    pub logo_url: Option<String>,
    /// The accent colour, `#rrggbb` (lowercase).
    pub accent_color: Option<String>,
    /// The origins allowed to frame the portal.
    pub frame_ancestors: Vec<String>,
}

/// The storage operations of the portal.
#[async_trait]
pub trait PortalStore: Send + Sync + 'static {
    /// Stores a portal link (audited as `portal_link_created`).
    async fn create_portal_link(
        &self,
        link: NewPortalLink,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Uses the link with this token digest: marks it used and returns it, in one statement,
    /// if it is unused and not expired at `now`; `None` otherwise (unknown, used or expired
    /// alike).
    async fn use_portal_link(
        &self,
        digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<UsedPortalLink>, StoreError>;

    /// Deletes every portal link that expired before `before` (used or not: past its expiry a
    /// link opens nothing); how many.
    async fn delete_spent_portal_links(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// The organization's branding, or its defaults (the organization's name, nothing else)
    /// when never set; `NotFound` for an unknown organization. One indexed read.
    async fn branding(&self, org: OrgId) -> Result<Branding, StoreError>;

    /// Sets the organization's branding (audited as `branding_updated`).
    async fn put_branding(
        &self,
        org: OrgId,
        branding: BrandingUpdate,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Branding, StoreError>;
}
