//! Session rows: sign-in, lookup by token digest, the idle clock, sign-out (one, all but the
//! current, every one), password changes, which end the other sessions, and the deletion of
//! spent ones.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, SessionId, UserId};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::people::{USER_COLUMNS, id_bytes, user_from_row};
use super::rows::{bytes16, corrupt};
use super::sweep::{self, Expiring};
use crate::store::StoreError;
use crate::store::people::{NewSession, SessionKind, SessionRecord, UserRecord};

const SESSION_COLUMNS: &str = "s.id AS session_id, s.user_id, s.org_id, s.kind, \
     s.created_at AS session_created_at, s.last_seen_at, s.expires_at, s.ended_at, s.ip, \
     s.user_agent, s.return_url";

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let kind = match row.try_get::<String, _>("kind")?.as_str() {
        "dashboard" => SessionKind::Dashboard,
        "portal" => SessionKind::Portal,
        _ => return Err(corrupt("unknown session kind")),
    };
    Ok(SessionRecord {
        id: SessionId::from_bytes(bytes16(row.try_get("session_id")?)?),
        user_id: UserId::from_bytes(bytes16(row.try_get("user_id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        kind,
        created_at: Timestamp(row.try_get("session_created_at")?),
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Timestamp),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        return_url: row.try_get("return_url")?,
    })
}

pub(super) async fn create(
    store: &SqlStore,
    session: NewSession,
    now: Timestamp,
) -> Result<SessionRecord, StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, token_digest, user_id, org_id, kind, created_at, last_seen_at, \
         expires_at, ip, user_agent, return_url) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, \
         $10)",
    )
    .bind(id_bytes(session.id.to_bytes()))
    .bind(session.token_digest.to_vec())
    .bind(id_bytes(session.user.to_bytes()))
    .bind(id_bytes(session.org.to_bytes()))
    .bind(session.kind.as_str())
    .bind(now.as_millis())
    .bind(session.expires_at.as_millis())
    .bind(session.ip.clone())
    .bind(session.user_agent.clone())
    .bind(session.return_url.clone())
    .execute(&store.pool)
    .await?;
    Ok(SessionRecord {
        id: session.id,
        user_id: session.user,
        org_id: session.org,
        kind: session.kind,
        created_at: now,
        last_seen_at: now,
        expires_at: session.expires_at,
        ended_at: None,
        ip: session.ip,
        user_agent: session.user_agent,
        return_url: session.return_url,
    })
}

pub(super) async fn by_token(
    store: &SqlStore,
    digest: &[u8; 32],
) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
    let user_columns = USER_COLUMNS
        .split(", ")
        .map(|column| format!("u.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, {user_columns} FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_digest = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(digest.to_vec())
        .fetch_optional(&store.pool)
        .await?;
    row.map(|row| Ok((session_from_row(&row)?, user_from_row(&row)?)))
        .transpose()
}

pub(super) async fn touch(
    store: &SqlStore,
    id: SessionId,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
        .bind(now.as_millis())
        .bind(id_bytes(id.to_bytes()))
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn end(
    store: &SqlStore,
    user: UserId,
    id: SessionId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let ended = sqlx::query(
        "UPDATE sessions SET ended_at = $1 WHERE id = $2 AND user_id = $3 AND ended_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(id_bytes(id.to_bytes()))
    .bind(id_bytes(user.to_bytes()))
    .execute(&store.pool)
    .await?;
    Ok(ended.rows_affected() > 0)
}

pub(super) async fn end_all(
    store: &SqlStore,
    user: UserId,
    keep: Option<SessionId>,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let keep = keep.map(|id| id_bytes(id.to_bytes())).unwrap_or_default();
    let ended = sqlx::query(
        "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL AND id <> $3",
    )
    .bind(now.as_millis())
    .bind(id_bytes(user.to_bytes()))
    .bind(keep)
    .execute(&store.pool)
    .await?;
    Ok(ended.rows_affected())
}

pub(super) async fn of_user(
    store: &SqlStore,
    user: UserId,
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.ended_at IS NULL \
         ORDER BY s.created_at DESC, s.id DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(user.to_bytes()))
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(session_from_row).collect()
}

pub(super) async fn delete_spent(store: &SqlStore, before: Timestamp) -> Result<u64, StoreError> {
    let sessions = Expiring::by("sessions", "id", "expires_at");
    sweep::delete_before(&store.pool, &sessions, before).await
}

pub(super) async fn set_password(
    store: &SqlStore,
    user: UserId,
    password_hash: &str,
    keep: Option<SessionId>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let updated = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(password_hash.to_owned())
        .bind(now.as_millis())
        .bind(id_bytes(user.to_bytes()))
        .execute(&store.pool)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    end_all(store, user, keep, now).await?;
    Ok(())
}
