//! The role table, ceilings and narrowing, checked row by row.

use keyplane_shared::{Scope, ScopeSet};

use super::*;

fn scopes(list: &[&str]) -> ScopeSet {
    ScopeSet::parse(list).expect("valid scopes")
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).expect("valid scope")
}

fn member(role: &str) -> Access {
    Access::of_member(
        RoleName::parse(role).expect("role"),
        if role == "developer" {
            ScopeCeiling::developer_default()
        } else {
            ScopeCeiling::Only(scopes(&["billing:read"]))
        },
        true,
    )
}

#[test]
fn each_role_has_exactly_its_permissions() {
    use Permission::*;
    let all = [
        Read,
        CreateKeys,
        ManageAllKeys,
        ManageOwnKeys,
        ManageMembers,
        ManageOwners,
        ManageRoles,
    ];
    let table: [(&str, &[Permission]); 5] = [
        ("owner", &all),
        (
            "admin",
            &[
                Read,
                CreateKeys,
                ManageAllKeys,
                ManageOwnKeys,
                ManageMembers,
            ],
        ),
        ("developer", &[Read, CreateKeys, ManageOwnKeys]),
        ("viewer", &[Read]),
        ("support-bot", &[Read, CreateKeys, ManageOwnKeys]),
    ];
    for (role, granted) in table {
        let access = member(role);
        for permission in all {
            assert_eq!(
                access.may(permission),
                granted.contains(&permission),
                "{role} / {permission:?}"
            );
        }
    }
}

#[test]
fn only_owners_of_the_first_organization_are_operators() {
    assert!(member("owner").operator);
    assert!(!member("admin").operator);
    let not_first = Access::of_member(
        RoleName::Builtin(BuiltinRole::Owner),
        ScopeCeiling::Everything,
        false,
    );
    assert!(!not_first.operator);
}

#[test]
fn admins_manage_members_but_not_owners() {
    let admin = member("admin");
    assert!(admin.may_manage_member_with(&RoleName::parse("developer").expect("role")));
    assert!(!admin.may_manage_member_with(&RoleName::parse("owner").expect("role")));
    assert!(member("owner").may_manage_member_with(&RoleName::parse("owner").expect("role")));
    assert!(!member("developer").may_manage_member_with(&RoleName::parse("viewer").expect("role")));
}

#[test]
fn the_developer_default_refuses_admin_and_key_management_and_what_covers_them() {
    let ceiling = ScopeCeiling::developer_default();
    for (text, allowed) in [
        ("billing:read", true),
        ("api-keys:read", true),
        ("projects:*", true),
        ("admin:full", false),
        ("api-keys:manage", false),
        ("api-keys:*", false),
    ] {
        assert_eq!(ceiling.allows(&scope(text)), allowed, "{text}");
    }
}

#[test]
fn owners_and_admins_have_no_ceiling_viewers_have_nothing() {
    assert_eq!(member("owner").ceiling, ScopeCeiling::Everything);
    assert_eq!(member("admin").ceiling, ScopeCeiling::Everything);
    assert!(!member("viewer").ceiling.allows(&scope("billing:read")));
}

#[test]
fn an_only_ceiling_allows_what_its_scopes_cover() {
    let ceiling = ScopeCeiling::Only(scopes(&["billing:*", "projects:read"]));
    assert!(ceiling.allows(&scope("billing:write")));
    assert!(ceiling.allows(&scope("projects:read")));
    assert!(!ceiling.allows(&scope("projects:write")));
    assert!(!ceiling.allows(&scope("admin:full")));
    assert_eq!(
        ceiling.first_refused(&scopes(&["billing:read", "projects:write"])),
        Some(&scope("projects:write"))
    );
}

#[test]
fn narrowing_keeps_what_is_allowed_and_expands_wide_scopes_into_the_ceiling() {
    let ceiling = ScopeCeiling::Only(scopes(&["billing:read", "projects:read"]));
    assert_eq!(
        ceiling.narrow(&scopes(&["admin:full"])),
        scopes(&["billing:read", "projects:read"])
    );
    assert_eq!(
        ceiling.narrow(&scopes(&["billing:*", "users:read"])),
        scopes(&["billing:read"])
    );
    let developer = ScopeCeiling::developer_default();
    assert_eq!(
        developer.narrow(&scopes(&["admin:full", "billing:read", "api-keys:*"])),
        scopes(&["billing:read"])
    );
    // Narrowing is idempotent and the result always fits the ceiling.
    let once = ceiling.narrow(&scopes(&["admin:full", "billing:*"]));
    assert!(ceiling.allows_all(&once));
    assert_eq!(ceiling.narrow(&once), once);
}

#[test]
fn management_keys_manage_members_only_with_admin_full() {
    let manage = Access::of_management_key(&scopes(&["api-keys:manage"]), true);
    assert!(manage.may(Permission::ManageAllKeys));
    assert!(!manage.may(Permission::ManageMembers));
    assert!(!manage.operator);
    let full = Access::of_management_key(&scopes(&["admin:full"]), true);
    assert!(full.may(Permission::ManageOwners));
    assert!(full.operator);
}

#[test]
fn role_names_are_validated() {
    for good in ["support-bot", "ci_runner", "a1"] {
        assert_eq!(RoleName::parse(good), Ok(RoleName::Custom(good.to_owned())));
    }
    for bad in ["", "1abc", "Support", "a b", "x".repeat(41).as_str(), "é"] {
        assert!(RoleName::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        RoleName::parse("owner"),
        Ok(RoleName::Builtin(BuiltinRole::Owner))
    );
}
