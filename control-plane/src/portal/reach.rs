//! Which roles a caller may hand out in a portal link: never one that reaches further than the
//! caller itself. Pure rules over [`Access`], unit-tested here.
//!
//! - `owner` needs the right to manage owners; `admin` the right to manage members.
//! - `viewer` needs only to read.
//! - `developer` or a custom role: the caller creates keys, and the role's ceiling is within
//!   the caller's own.

use keyplane_shared::Scope;

use crate::access::{Access, BuiltinRole, Permission, RoleName, ScopeCeiling};

/// Whether a caller with `caller` may give a portal session the access `given`.
pub fn may_give(caller: &Access, given: &Access) -> bool {
    match &given.role {
        None => false,
        Some(RoleName::Builtin(BuiltinRole::Owner)) => caller.may(Permission::ManageOwners),
        Some(RoleName::Builtin(BuiltinRole::Admin)) => caller.may(Permission::ManageMembers),
        Some(RoleName::Builtin(BuiltinRole::Viewer)) => caller.may(Permission::Read),
        Some(RoleName::Builtin(BuiltinRole::Developer) | RoleName::Custom(_)) => {
            caller.may(Permission::CreateKeys) && within(&given.ceiling, &caller.ceiling)
        }
    }
}

/// Whether every scope `inner` allows, `outer` allows too (conservatively: `false` when that
/// cannot be shown).
fn within(inner: &ScopeCeiling, outer: &ScopeCeiling) -> bool {
    // `admin:full` covers every scope: a ceiling that allows it allows everything.
    if outer.allows(&Scope::AdminFull) {
        return true;
    }
    match (inner, outer) {
        (_, ScopeCeiling::Everything) => true,
        (ScopeCeiling::Only(scopes), outer) => outer.allows_all(scopes),
        // A scope `outer` refuses covers one of its exclusions; if `inner` refuses each of
        // those exclusions, it refuses every scope covering one of them too.
        (ScopeCeiling::AllExcept(_), ScopeCeiling::AllExcept(excluded)) => excluded
            .as_slice()
            .iter()
            .all(|denied| !inner.allows(denied)),
        (ScopeCeiling::Everything, _) | (ScopeCeiling::AllExcept(_), ScopeCeiling::Only(_)) => {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use keyplane_shared::ScopeSet;

    use super::*;

    fn member(role: BuiltinRole) -> Access {
        let ceiling = match role {
            BuiltinRole::Developer => ScopeCeiling::developer_default(),
            _ => ScopeCeiling::Everything,
        };
        Access::of_member(RoleName::Builtin(role), ceiling, false)
    }

    fn key(scopes: &[&str]) -> Access {
        Access::of_management_key(
            &ScopeSet::parse(scopes.iter().copied()).expect("scopes"),
            false,
        )
    }

    fn custom(scopes: &[&str]) -> Access {
        let scopes = ScopeSet::parse(scopes.iter().copied()).expect("scopes");
        Access::of_member(
            RoleName::Custom("support".into()),
            ScopeCeiling::Only(scopes),
            false,
        )
    }

    #[test]
    fn only_callers_who_manage_owners_give_an_owner_portal() {
        let owner = member(BuiltinRole::Owner);
        assert!(may_give(&member(BuiltinRole::Owner), &owner));
        assert!(may_give(&key(&["admin:full"]), &owner));
        assert!(!may_give(&member(BuiltinRole::Admin), &owner));
        assert!(!may_give(&key(&["api-keys:manage"]), &owner));
    }

    #[test]
    fn an_admin_portal_needs_the_right_to_manage_members() {
        let admin = member(BuiltinRole::Admin);
        assert!(may_give(&member(BuiltinRole::Admin), &admin));
        assert!(!may_give(&member(BuiltinRole::Developer), &admin));
        assert!(!may_give(
            &key(&["api-keys:manage", "contacts:read"]),
            &admin
        ));
    }

    #[test]
    fn anyone_gives_a_viewer_portal() {
        let viewer = member(BuiltinRole::Viewer);
        for caller in [member(BuiltinRole::Viewer), key(&["api-keys:manage"])] {
            assert!(may_give(&caller, &viewer));
        }
    }

    #[test]
    fn a_developer_or_custom_portal_stays_within_the_callers_ceiling() {
        let developer = member(BuiltinRole::Developer);
        assert!(may_give(&member(BuiltinRole::Developer), &developer));
        assert!(may_give(&member(BuiltinRole::Admin), &developer));
        assert!(!may_give(&key(&["api-keys:manage"]), &developer));
        assert!(may_give(&key(&["admin:full"]), &developer));
        assert!(!may_give(&member(BuiltinRole::Viewer), &developer));
        let support = custom(&["contacts:read"]);
        assert!(may_give(&key(&["api-keys:manage", "contacts:*"]), &support));
        assert!(!may_give(
            &key(&["api-keys:manage", "billing:read"]),
            &support
        ));
        assert!(may_give(&member(BuiltinRole::Developer), &support));
        assert!(!may_give(&custom(&["billing:read"]), &support));
        let wide = custom(&["admin:full"]);
        assert!(!may_give(&member(BuiltinRole::Developer), &wide));
    }
}
