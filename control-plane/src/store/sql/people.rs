//! People rows: users, memberships, roles, organization links, and reading them. The mutations
//! that touch an organization's audit chain (roles, invitations, memberships) are in
//! `members.rs`; sessions in `sessions.rs`.

use keyplane_shared::ids::{OrgId, UserId};
use keyplane_shared::{ScopeSet, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::SqlStore;
use super::rows::{bytes16, corrupt};
use crate::access::{BuiltinRole, RoleName, ScopeCeiling};
use crate::store::StoreError;
use crate::store::people::{
    HostUser, MemberRecord, Membership, RoleRecord, UserRecord, UserSummary,
};
use crate::store::records::OrgRecord;

/// The user columns, as [`user_from_row`] reads them.
pub(super) const USER_COLUMNS: &str = "id, email, display_name, password_hash, external_issuer, \
     external_subject, created_at";

pub(super) fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let issuer: Option<String> = row.try_get("external_issuer")?;
    let subject: Option<String> = row.try_get("external_subject")?;
    Ok(UserRecord {
        id: UserId::from_bytes(bytes16(row.try_get("id")?)?),
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        external: issuer.zip(subject),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(super) fn role_of(text: &str) -> Result<RoleName, StoreError> {
    RoleName::parse(text).map_err(|_| corrupt("invalid stored role"))
}

fn scopes_of(text: &str) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse(text.split_whitespace()).map_err(|_| corrupt("invalid stored role scopes"))
}

pub(super) fn id_bytes(id: [u8; 16]) -> Vec<u8> {
    id.to_vec()
}

pub(super) async fn user(store: &SqlStore, id: UserId) -> Result<UserRecord, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(id.to_bytes()))
        .fetch_optional(&store.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    user_from_row(&row)
}

pub(super) async fn user_by_email(
    store: &SqlStore,
    email: &str,
) -> Result<Option<UserRecord>, StoreError> {
    // No stored email has a NUL (emails are checked when stored, and PostgreSQL text cannot
    // hold one, so PostgreSQL would refuse the question): such an email is nobody's.
    if email.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(email.to_owned())
        .fetch_optional(&store.pool)
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
}

pub(super) async fn memberships(
    store: &SqlStore,
    user: UserId,
) -> Result<Vec<Membership>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.org_id, o.name, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
         WHERE m.user_id = $1 ORDER BY m.created_at, m.org_id",
    )
    .bind(id_bytes(user.to_bytes()))
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Membership {
                org_id: OrgId::from_bytes(bytes16(row.try_get(0)?)?),
                org_name: row.try_get(1)?,
                role: role_of(&row.try_get::<String, _>(2)?)?,
            })
        })
        .collect()
}

const MEMBER_SELECT: &str = "SELECT u.id, u.display_name, u.email, m.role, m.created_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";

fn member_from_row(row: &AnyRow) -> Result<MemberRecord, StoreError> {
    Ok(MemberRecord {
        user: UserSummary {
            id: UserId::from_bytes(bytes16(row.try_get(0)?)?),
            display_name: row.try_get(1)?,
            email: row.try_get(2)?,
        },
        role: role_of(&row.try_get::<String, _>(3)?)?,
        joined_at: Timestamp(row.try_get(4)?),
    })
}

/// One membership, read on `connection` (inside a mutation, or on the pool).
pub(super) async fn member_on(
    connection: &mut AnyConnection,
    org: OrgId,
    user: UserId,
) -> Result<Option<MemberRecord>, StoreError> {
    let sql = format!("{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(org.to_bytes()))
        .bind(id_bytes(user.to_bytes()))
        .fetch_optional(&mut *connection)
        .await?
        .map(|row| member_from_row(&row))
        .transpose()
}

pub(super) async fn member(
    store: &SqlStore,
    org: OrgId,
    user: UserId,
) -> Result<Option<MemberRecord>, StoreError> {
    let mut connection = store.pool.acquire().await?;
    member_on(&mut connection, org, user).await
}

/// Every member, read on `connection`.
pub(super) async fn members_on(
    connection: &mut AnyConnection,
    org: OrgId,
) -> Result<Vec<MemberRecord>, StoreError> {
    let sql = format!("{MEMBER_SELECT} WHERE m.org_id = $1 ORDER BY m.created_at, u.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(org.to_bytes()))
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(member_from_row).collect()
}

pub(super) async fn members(store: &SqlStore, org: OrgId) -> Result<Vec<MemberRecord>, StoreError> {
    let mut connection = store.pool.acquire().await?;
    members_on(&mut connection, org).await
}

pub(super) async fn user_summaries(
    store: &SqlStore,
    ids: &[UserId],
) -> Result<Vec<UserSummary>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    // Pages are at most a few hundred keys with a handful of owners: one query per owner.
    let mut unique: Vec<UserId> = ids.to_vec();
    unique.sort();
    unique.dedup();
    for id in unique {
        let row = sqlx::query("SELECT id, display_name, email FROM users WHERE id = $1")
            .bind(id_bytes(id.to_bytes()))
            .fetch_optional(&store.pool)
            .await?;
        if let Some(row) = row {
            found.push(UserSummary {
                id: UserId::from_bytes(bytes16(row.try_get(0)?)?),
                display_name: row.try_get(1)?,
                email: row.try_get(2)?,
            });
        }
    }
    Ok(found)
}

pub(super) async fn org_name(store: &SqlStore, org: OrgId) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT name FROM orgs WHERE id = $1")
        .bind(id_bytes(org.to_bytes()))
        .fetch_optional(&store.pool)
        .await?;
    row.map(|row| Ok(row.try_get(0)?)).transpose()
}

pub(super) async fn organizations(store: &SqlStore) -> Result<Vec<(OrgRecord, u64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.id, o.name, o.created_at, \
         (SELECT COUNT(*) FROM memberships m WHERE m.org_id = o.id) \
         FROM orgs o ORDER BY o.created_at, o.id",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                OrgRecord {
                    id: OrgId::from_bytes(bytes16(row.try_get(0)?)?),
                    name: row.try_get(1)?,
                    created_at: Timestamp(row.try_get(2)?),
                },
                super::rows::u64_of(row.try_get(3)?)?,
            ))
        })
        .collect()
}

pub(super) async fn first_org(store: &SqlStore) -> Result<Option<OrgId>, StoreError> {
    let row = sqlx::query("SELECT operator_org FROM deployment WHERE id = 1")
        .fetch_optional(&store.pool)
        .await?;
    row.map(|row| Ok(OrgId::from_bytes(bytes16(row.try_get(0)?)?)))
        .transpose()
}

/// The stored scopes of a role (custom, or the developer override), on `connection`.
async fn stored_role(
    connection: &mut AnyConnection,
    org: OrgId,
    name: &str,
) -> Result<Option<(ScopeSet, Timestamp)>, StoreError> {
    let row = sqlx::query("SELECT scopes, updated_at FROM roles WHERE org_id = $1 AND name = $2")
        .bind(id_bytes(org.to_bytes()))
        .bind(name.to_owned())
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|row| {
        Ok((
            scopes_of(&row.try_get::<String, _>(0)?)?,
            Timestamp(row.try_get(1)?),
        ))
    })
    .transpose()
}

/// The ceiling of `role` in `org`, on `connection`.
pub(super) async fn role_ceiling_on(
    connection: &mut AnyConnection,
    org: OrgId,
    role: &RoleName,
) -> Result<ScopeCeiling, StoreError> {
    match role {
        RoleName::Builtin(BuiltinRole::Owner | BuiltinRole::Admin) => Ok(ScopeCeiling::Everything),
        RoleName::Builtin(BuiltinRole::Viewer) => Ok(ScopeCeiling::nothing()),
        RoleName::Builtin(BuiltinRole::Developer) => Ok(stored_role(connection, org, "developer")
            .await?
            .map_or_else(ScopeCeiling::developer_default, |(scopes, _)| {
                ScopeCeiling::Only(scopes)
            })),
        RoleName::Custom(name) => stored_role(connection, org, name)
            .await?
            .map(|(scopes, _)| ScopeCeiling::Only(scopes))
            .ok_or(StoreError::NotFound),
    }
}

pub(super) async fn role_ceiling(
    store: &SqlStore,
    org: OrgId,
    role: &RoleName,
) -> Result<ScopeCeiling, StoreError> {
    let mut connection = store.pool.acquire().await?;
    role_ceiling_on(&mut connection, org, role).await
}

/// One role's record, on `connection`.
pub(super) async fn role_on(
    connection: &mut AnyConnection,
    org: OrgId,
    role: &RoleName,
) -> Result<RoleRecord, StoreError> {
    let updated_at = stored_role(connection, org, role.as_str())
        .await?
        .map(|(_, at)| at);
    Ok(RoleRecord {
        ceiling: role_ceiling_on(connection, org, role).await?,
        builtin: matches!(role, RoleName::Builtin(_)),
        name: role.clone(),
        updated_at,
    })
}

pub(super) async fn roles(store: &SqlStore, org: OrgId) -> Result<Vec<RoleRecord>, StoreError> {
    let mut connection = store.pool.acquire().await?;
    let mut roles = Vec::new();
    for builtin in BuiltinRole::ALL {
        roles.push(role_on(&mut connection, org, &RoleName::Builtin(builtin)).await?);
    }
    let rows = sqlx::query("SELECT name FROM roles WHERE org_id = $1 ORDER BY name")
        .bind(id_bytes(org.to_bytes()))
        .fetch_all(&mut *connection)
        .await?;
    for row in rows {
        let name = role_of(&row.try_get::<String, _>(0)?)?;
        if let RoleName::Custom(_) = name {
            roles.push(role_on(&mut connection, org, &name).await?);
        }
    }
    Ok(roles)
}

pub(super) async fn host_user(
    store: &SqlStore,
    user: HostUser,
    now: Timestamp,
) -> Result<UserRecord, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE external_issuer = $1 AND external_subject = $2"
    );
    let existing = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .bind(user.issuer.clone())
        .bind(user.subject.clone())
        .fetch_optional(&store.pool)
        .await?
        .map(|row| user_from_row(&row))
        .transpose()?;
    match existing {
        Some(found) if found.display_name == user.display_name && found.email == user.email => {
            Ok(found)
        }
        Some(found) => {
            // The host product is the source of truth for its users' names and emails; an
            // email taken by a local account stays with that account.
            let email = match &user.email {
                Some(email) => {
                    let taken = sqlx::query("SELECT id FROM users WHERE email = $1 AND id <> $2")
                        .bind(email.clone())
                        .bind(id_bytes(found.id.to_bytes()))
                        .fetch_optional(&store.pool)
                        .await?
                        .is_some();
                    if taken {
                        found.email.clone()
                    } else {
                        Some(email.clone())
                    }
                }
                None => None,
            };
            sqlx::query(
                "UPDATE users SET display_name = $1, email = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(user.display_name.clone())
            .bind(email.clone())
            .bind(now.as_millis())
            .bind(id_bytes(found.id.to_bytes()))
            .execute(&store.pool)
            .await?;
            Ok(UserRecord {
                display_name: user.display_name,
                email,
                ..found
            })
        }
        None => {
            let id = UserId::generate().map_err(|error| StoreError::Corrupt(error.to_string()))?;
            let email_free = match &user.email {
                Some(email) => sqlx::query("SELECT id FROM users WHERE email = $1")
                    .bind(email.clone())
                    .fetch_optional(&store.pool)
                    .await?
                    .is_none(),
                None => false,
            };
            let email = user.email.clone().filter(|_| email_free);
            // Two first requests of one user at once: the loser finds the winner's row.
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, display_name, external_issuer, external_subject, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(id_bytes(id.to_bytes()))
            .bind(email)
            .bind(user.display_name.clone())
            .bind(user.issuer.clone())
            .bind(user.subject.clone())
            .bind(now.as_millis())
            .execute(&store.pool)
            .await?;
            let _ = inserted;
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user.issuer)
                .bind(user.subject)
                .fetch_one(&store.pool)
                .await?;
            user_from_row(&row)
        }
    }
}

pub(super) async fn linked_org(
    store: &SqlStore,
    issuer: &str,
    external_id: &str,
) -> Result<Option<OrgId>, StoreError> {
    let row = sqlx::query("SELECT org_id FROM org_links WHERE issuer = $1 AND external_id = $2")
        .bind(issuer.to_owned())
        .bind(external_id.to_owned())
        .fetch_optional(&store.pool)
        .await?;
    row.map(|row| Ok(OrgId::from_bytes(bytes16(row.try_get(0)?)?)))
        .transpose()
}

/// One user, read on `connection`.
pub(super) async fn user_on(
    connection: &mut AnyConnection,
    id: UserId,
) -> Result<UserRecord, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(id.to_bytes()))
        .fetch_optional(&mut *connection)
        .await?
        .ok_or(StoreError::NotFound)?;
    user_from_row(&row)
}
