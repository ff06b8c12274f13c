//! The JSON shapes the people API answers with.

use serde::Serialize;
use utoipa::ToSchema;

use crate::access::CeilingView;
use crate::input::time::rfc3339;
use crate::store::{
    InvitationRecord, MemberRecord, RoleRecord, SessionKind, SessionRecord, UserSummary,
};

/// A member of the organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// Who.
    pub user: UserSummary,
    /// Their role.
    pub role: String,
    /// When they joined (RFC 3339).
    pub joined_at: String,
}

impl From<&MemberRecord> for MemberView {
    fn from(member: &MemberRecord) -> Self {
        MemberView {
            user: member.user.clone(),
            role: member.role.as_str().to_owned(),
            joined_at: rfc3339(member.joined_at),
        }
    }
}

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    /// Its name.
    pub name: String,
    /// Built in (cannot be deleted).
    pub builtin: bool,
    /// The scopes its members' keys may hold.
    pub ceiling: CeilingView,
    /// When an owner last changed it.
    pub updated_at: Option<String>,
}

impl From<&RoleRecord> for RoleView {
    fn from(role: &RoleRecord) -> Self {
        RoleView {
            name: role.name.as_str().to_owned(),
            builtin: role.builtin,
            ceiling: role.ceiling.describe(),
            updated_at: role.updated_at.map(rfc3339),
        }
    }
}

/// A session, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// `ses_…`.
    pub id: String,
    /// `dashboard` or `portal`.
    pub kind: SessionKind,
    /// Signed in at.
    pub created_at: String,
    /// Last request.
    pub last_seen_at: String,
    /// Ends at the latest.
    pub expires_at: String,
    /// Address at sign-in.
    pub ip: Option<String>,
    /// Browser at sign-in.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request.
    pub current: bool,
}

impl SessionView {
    /// The view of `session`; `current` when it made the request.
    pub fn of(session: &SessionRecord, current: bool) -> Self {
        SessionView {
            id: session.id.to_string(),
            kind: session.kind,
            created_at: rfc3339(session.created_at),
            last_seen_at: rfc3339(session.last_seen_at),
            expires_at: rfc3339(session.expires_at),
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            current,
        }
    }
}

/// A pending invitation, as the organization's managers see it (never its link: Keyplane
/// keeps only the link's digest).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    /// `inv_…`.
    pub id: String,
    /// For whom (none: a first owner's setup link).
    pub email: Option<String>,
    /// The role accepting it gives.
    pub role: String,
    /// Who invited (`usr_…`; none: the first start or the CLI).
    pub invited_by: Option<String>,
    /// When it was sent (RFC 3339).
    pub created_at: String,
    /// When its link stops working (RFC 3339).
    pub expires_at: String,
}

impl From<&InvitationRecord> for InvitationView {
    fn from(invitation: &InvitationRecord) -> Self {
        InvitationView {
            id: invitation.id.to_string(),
            email: invitation.email.clone(),
            role: invitation.role.as_str().to_owned(),
            invited_by: invitation.invited_by.map(|user| user.to_string()),
            created_at: rfc3339(invitation.created_at),
            expires_at: rfc3339(invitation.expires_at),
        }
    }
}
