//! Who may do what: the built-in roles, an organization's custom roles, the scope ceiling a
//! role puts on the keys its members make, and the permissions of a caller. Pure rules, unit-
//! tested without a database (`access/tests.rs`, table-driven).
//!
//! - `owner`: everything, including members (owners too) and roles.
//! - `admin`: every key; members except owners (an admin neither changes, removes nor makes an
//!   owner).
//! - `developer`: creates keys and manages the keys they own, within the role's ceiling (by
//!   default every scope except `admin:full` and `api-keys:manage`; an owner can change it).
//! - `viewer`: reads keys, members, usage and audit; creates nothing.
//! - A custom role: a name and a set of scopes, the ceiling for the keys its members create; its
//!   members act like developers within it.
//! - A management key: manages every key within its own scopes; one holding `admin:full` also
//!   manages members and roles, like an owner.
//!
//! "A key may never hold more than its creator": a caller can grant only scopes its ceiling
//! allows, and can only change keys whose scopes its ceiling allows.

#[cfg(test)]
mod tests;

use std::fmt;

use keyplane_shared::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};

/// The scope that lets a management key manage its organization's keys.
pub const MANAGE_SCOPE: &str = "api-keys:manage";

/// Longest custom role name.
pub const MAX_ROLE_NAME_LEN: usize = 40;

/// A role built into every organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinRole {
    /// Everything.
    Owner,
    /// Every key; members except owners.
    Admin,
    /// Own keys, within the developer ceiling.
    Developer,
    /// Reads only.
    Viewer,
}

impl BuiltinRole {
    /// Every built-in role, most powerful first.
    pub const ALL: [BuiltinRole; 4] = [
        BuiltinRole::Owner,
        BuiltinRole::Admin,
        BuiltinRole::Developer,
        BuiltinRole::Viewer,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "owner",
            BuiltinRole::Admin => "admin",
            BuiltinRole::Developer => "developer",
            BuiltinRole::Viewer => "viewer",
        }
    }
}

/// A role's name: built in, or an organization's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoleName {
    /// A built-in role.
    Builtin(BuiltinRole),
    /// A custom role (validated: see [`RoleName::parse`]).
    Custom(String),
}

/// Why a role name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a role name is 1 to {MAX_ROLE_NAME_LEN} characters of a-z, 0-9, '-' or '_', starting with a letter"
)]
pub struct InvalidRoleName;

impl RoleName {
    /// Parses a role name: a built-in one, or a custom name of 1 to [`MAX_ROLE_NAME_LEN`]
    /// characters of `a-z 0-9 - _` starting with a letter.
    pub fn parse(text: &str) -> Result<Self, InvalidRoleName> {
        if let Some(builtin) = BuiltinRole::ALL.into_iter().find(|r| r.as_str() == text) {
            return Ok(RoleName::Builtin(builtin));
        }
        let bytes = text.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_ROLE_NAME_LEN
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(RoleName::Custom(text.to_owned()))
        } else {
            Err(InvalidRoleName)
        }
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        match self {
            RoleName::Builtin(role) => role.as_str(),
            RoleName::Custom(name) => name,
        }
    }

    /// Whether this is the owner role.
    pub fn is_owner(&self) -> bool {
        *self == RoleName::Builtin(BuiltinRole::Owner)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a caller may grant and reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeCeiling {
    /// Every scope (owners and admins).
    Everything,
    /// Every scope that covers none of these (the developer default: no `admin:full`, no
    /// `api-keys:manage`, so no `api-keys:*` either).
    AllExcept(ScopeSet),
    /// Only scopes covered by these (custom roles, a changed developer ceiling, keys).
    Only(ScopeSet),
}

impl ScopeCeiling {
    /// The developer role's ceiling until an owner changes it.
    pub fn developer_default() -> Self {
        let excluded = ScopeSet::parse(["admin:full", MANAGE_SCOPE])
            .unwrap_or_else(|_| unreachable!("both scopes are valid"));
        ScopeCeiling::AllExcept(excluded)
    }

    /// Nothing at all (viewers).
    pub fn nothing() -> Self {
        ScopeCeiling::Only(ScopeSet::empty())
    }

    /// Whether a key may hold `scope` under this ceiling.
    pub fn allows(&self, scope: &Scope) -> bool {
        match self {
            ScopeCeiling::Everything => true,
            ScopeCeiling::AllExcept(excluded) => !excluded
                .as_slice()
                .iter()
                .any(|denied| scope.covers(denied)),
            ScopeCeiling::Only(allowed) => allowed.covers(scope),
        }
    }

    /// The first scope of `scopes` this ceiling does not allow.
    pub fn first_refused<'a>(&self, scopes: &'a ScopeSet) -> Option<&'a Scope> {
        scopes.as_slice().iter().find(|scope| !self.allows(scope))
    }

    /// Whether every scope of `scopes` is allowed.
    pub fn allows_all(&self, scopes: &ScopeSet) -> bool {
        self.first_refused(scopes).is_none()
    }

    /// `scopes` cut down to what this ceiling allows: the scopes it allows, plus, for a scope it
    /// does not, the ceiling's own scopes that one covers (`admin:full` under a ceiling of
    /// `billing:read` becomes `billing:read`). Under [`ScopeCeiling::AllExcept`] a refused
    /// scope is dropped.
    pub fn narrow(&self, scopes: &ScopeSet) -> ScopeSet {
        let mut kept: Vec<Scope> = Vec::new();
        for scope in scopes.as_slice() {
            if self.allows(scope) {
                kept.push(scope.clone());
            } else if let ScopeCeiling::Only(allowed) = self {
                kept.extend(
                    allowed
                        .as_slice()
                        .iter()
                        .filter(|granted| scope.covers(granted))
                        .cloned(),
                );
            }
        }
        // At most the key's own count plus the ceiling's, both bounded; cut to the limit if a
        // wide scope expanded into more.
        kept.sort();
        kept.dedup();
        kept.truncate(keyplane_shared::scope::MAX_SCOPES);
        ScopeSet::new(kept).unwrap_or_default()
    }

    /// The scopes to show for this ceiling in the API: `None` for [`ScopeCeiling::Everything`].
    pub fn describe(&self) -> CeilingView {
        match self {
            ScopeCeiling::Everything => CeilingView {
                all: true,
                scopes: Vec::new(),
                except: Vec::new(),
            },
            ScopeCeiling::AllExcept(excluded) => CeilingView {
                all: true,
                scopes: Vec::new(),
                except: excluded.as_slice().iter().map(|s| s.to_string()).collect(),
            },
            ScopeCeiling::Only(allowed) => CeilingView {
                all: false,
                scopes: allowed.as_slice().iter().map(|s| s.to_string()).collect(),
                except: Vec::new(),
            },
        }
    }
}

/// A ceiling as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CeilingView {
    /// Every scope is allowed (but those in `except`).
    pub all: bool,
    /// When `all` is false: the scopes allowed (and what they cover).
    pub scopes: Vec<String>,
    /// When `all` is true: scopes never allowed (nor any scope that covers one).
    pub except: Vec<String>,
}

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read keys, usage and the audit log.
    Read,
    /// Create keys (within the ceiling).
    CreateKeys,
    /// Change, rotate, revoke, delete and transfer any key within the ceiling.
    ManageAllKeys,
    /// Change, rotate, revoke and delete the keys one owns, within the ceiling.
    ManageOwnKeys,
    /// Invite members, change their roles, remove them (owners excepted unless
    /// [`Permission::ManageOwners`]).
    ManageMembers,
    /// Make, change and remove owners.
    ManageOwners,
    /// Create, change and delete roles, and change the developer ceiling.
    ManageRoles,
}

/// What a caller may do in its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The role it acts with (`None` for a management key).
    pub role: Option<RoleName>,
    /// The scopes it may grant and reach.
    pub ceiling: ScopeCeiling,
    /// Whether it is one of the deployment's operators (an owner of the first organization).
    pub operator: bool,
    permissions: Vec<Permission>,
}

impl Access {
    /// A member's access: `role` with `ceiling` (for developers and custom roles, the role's
    /// ceiling; ignored for owners, admins and viewers).
    pub fn of_member(role: RoleName, ceiling: ScopeCeiling, operator: bool) -> Self {
        use Permission::*;
        let (permissions, ceiling) = match &role {
            RoleName::Builtin(BuiltinRole::Owner) => (
                vec![
                    Read,
                    CreateKeys,
                    ManageAllKeys,
                    ManageOwnKeys,
                    ManageMembers,
                    ManageOwners,
                    ManageRoles,
                ],
                ScopeCeiling::Everything,
            ),
            RoleName::Builtin(BuiltinRole::Admin) => (
                vec![
                    Read,
                    CreateKeys,
                    ManageAllKeys,
                    ManageOwnKeys,
                    ManageMembers,
                ],
                ScopeCeiling::Everything,
            ),
            RoleName::Builtin(BuiltinRole::Viewer) => (vec![Read], ScopeCeiling::nothing()),
            RoleName::Builtin(BuiltinRole::Developer) | RoleName::Custom(_) => {
                (vec![Read, CreateKeys, ManageOwnKeys], ceiling)
            }
        };
        Access {
            role: Some(role),
            ceiling,
            operator: operator && permissions.contains(&ManageOwners),
            permissions,
        }
    }

    /// A management key's access: every key within its scopes; with `admin:full`, members and
    /// roles as well.
    pub fn of_management_key(scopes: &ScopeSet, operator: bool) -> Self {
        use Permission::*;
        let full = scopes.covers(&Scope::AdminFull);
        let mut permissions = vec![Read, CreateKeys, ManageAllKeys, ManageOwnKeys];
        if full {
            permissions.extend([ManageMembers, ManageOwners, ManageRoles]);
        }
        Access {
            role: None,
            ceiling: ScopeCeiling::Only(scopes.clone()),
            operator: operator && full,
            permissions,
        }
    }

    /// Whether it may do `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Whether it may give a member `role`, or change or remove a member who has `role`.
    pub fn may_manage_member_with(&self, role: &RoleName) -> bool {
        self.may(Permission::ManageMembers)
            && (!role.is_owner() || self.may(Permission::ManageOwners))
    }
}
