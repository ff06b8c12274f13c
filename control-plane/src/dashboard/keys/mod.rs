//! The API keys pages: the list ([`list`]), creating one and the copy-once view ([`create`]),
//! a key's page with its usage and audit trail ([`detail`], [`chart`]), and the actions on it
//! ([`actions`]: edit, regenerate, revoke, delete).
//!
//! Every page calls the REST API's own handlers with the viewer's [`Principal`], so what a page
//! may show or do is exactly what the API allows that person.
//!
//! [`Principal`]: crate::auth::Principal

pub mod actions;
pub mod chart;
pub mod create;
pub mod detail;
pub mod list;

use maud::{Markup, html};

use super::format;
use crate::access::Permission;
use crate::keys::model::{EnvironmentName, KeyView};
use crate::store::KeyState;
use keyplane_shared::time::Timestamp;

/// Days without use after which a key is flagged.
pub const UNUSED_DAYS: i64 = 90;

/// The status badge of a key (rotated keys still in their grace period say so).
pub fn status_badge(key: &KeyView) -> Markup {
    let (class, label) = match key.status {
        KeyState::Active if key.rotated_to.is_some() => ("rotated", "Rotated (grace period)"),
        KeyState::Active => ("active", "Active"),
        KeyState::Expired => ("expired", "Expired"),
        KeyState::Revoked => ("revoked", "Revoked"),
    };
    html! { span class={"badge " (class)} { (label) } }
}

/// The environment's name.
pub fn environment(name: EnvironmentName) -> &'static str {
    match name {
        EnvironmentName::Live => "live",
        EnvironmentName::Test => "test",
    }
}

/// Hygiene warnings of an active key: never expires, unused for [`UNUSED_DAYS`], holds scopes
/// its owner no longer has.
pub fn hygiene(key: &KeyView, now: Timestamp) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if key.status != KeyState::Active {
        return warnings;
    }
    if key.expires_at.is_none() {
        warnings.push("Never expires");
    }
    let idle_since = key.last_used_at.as_deref().unwrap_or(&key.created_at);
    if format::days_since(idle_since, now).is_some_and(|days| days >= UNUSED_DAYS) {
        warnings.push(if key.last_used_at.is_some() {
            "Unused for 90 days"
        } else {
            "Never used in 90 days"
        });
    }
    if key.exceeds_owner_scopes {
        warnings.push("Exceeds its owner's scopes");
    }
    warnings
}

/// The hygiene badges.
pub fn hygiene_badges(key: &KeyView, now: Timestamp) -> Markup {
    html! {
        @for warning in hygiene(key, now) {
            span.badge.warn { (warning) }
        }
    }
}

/// Whether the viewer may change keys at all (their own, or everyone's).
pub fn may_change(access: &crate::access::Access) -> bool {
    access.may(Permission::ManageOwnKeys) || access.may(Permission::ManageAllKeys)
}
