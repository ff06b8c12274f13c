//! Reading rows back into records, and the conversions between database and domain values.

use keyplane_shared::ids::{KeyId, OrgId, UserId};
use keyplane_shared::{Environment, LookupDigest, PepperId, RateLimit, ScopeSet, Timestamp};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::store::StoreError;
use crate::store::records::{AuditAction, AuditRecord, KeyRecord, Revocation, RevocationReason};

/// The key columns, as [`key_from_row`] reads them.
pub(super) const KEY_COLUMNS: &str = "id, org_id, name, environment, truncated, digest, \
     pepper_id, secret_hash, scopes, rate_limit_rpm, rate_limit_burst, metadata, created_at, \
     created_by, updated_at, expires_at, revoked_at, revocation_reason, revocation_note, \
     rotated_from, rotated_to, deleted_at, last_used_at, last_used_ip, owner_id, created_by_user";

/// The audit columns, as [`audit_from_row`] reads them.
pub(super) const AUDIT_COLUMNS: &str = "org_id, seq, at, action, actor_key_id, target_key_id, \
     ip, user_agent, request_id, details, prev_hash, hash, format, actor_user_id, target_user_id";

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(super) fn u64_of(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt("negative counter"))
}

pub(super) fn i64_of(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| corrupt("counter out of range"))
}

pub(super) fn bytes16(bytes: Vec<u8>) -> Result<[u8; 16], StoreError> {
    bytes.try_into().map_err(|_| corrupt("id is not 16 bytes"))
}

pub(super) fn bytes32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt("hash is not 32 bytes"))
}

pub(super) fn optional_key_id(row: &AnyRow, column: &str) -> Result<Option<KeyId>, StoreError> {
    row.try_get::<Option<Vec<u8>>, _>(column)?
        .map(|bytes| bytes16(bytes).map(KeyId::from_bytes))
        .transpose()
}

pub(super) fn optional_user_id(row: &AnyRow, column: &str) -> Result<Option<UserId>, StoreError> {
    row.try_get::<Option<Vec<u8>>, _>(column)?
        .map(|bytes| bytes16(bytes).map(UserId::from_bytes))
        .transpose()
}

pub(super) fn optional_time(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp))
}

pub(super) fn key_from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    let environment = Environment::from_label(&row.try_get::<String, _>("environment")?)
        .ok_or_else(|| corrupt("unknown environment"))?;
    let scopes_text: String = row.try_get("scopes")?;
    let scopes = ScopeSet::parse(scopes_text.split_whitespace())
        .map_err(|_| corrupt("invalid stored scopes"))?;
    let rate_limit = match (
        row.try_get::<Option<i64>, _>("rate_limit_rpm")?,
        row.try_get::<Option<i64>, _>("rate_limit_burst")?,
    ) {
        (Some(rpm), Some(burst)) => Some(
            RateLimit::new(
                u32::try_from(rpm).map_err(|_| corrupt("rate limit out of range"))?,
                u32::try_from(burst).map_err(|_| corrupt("burst out of range"))?,
            )
            .map_err(|_| corrupt("invalid stored rate limit"))?,
        ),
        _ => None,
    };
    let metadata = match serde_json::from_str(&row.try_get::<String, _>("metadata")?) {
        Ok(Value::Object(map)) => map,
        _ => return Err(corrupt("metadata is not a JSON object")),
    };
    let revocation = match row.try_get::<Option<String>, _>("revocation_reason")? {
        Some(label) => Some(Revocation {
            reason: RevocationReason::from_label(&label)
                .ok_or_else(|| corrupt("unknown revocation reason"))?,
            note: row.try_get("revocation_note")?,
        }),
        None => None,
    };
    let pepper_id = u8::try_from(row.try_get::<i64, _>("pepper_id")?)
        .map_err(|_| corrupt("pepper id out of range"))?;
    Ok(KeyRecord {
        id: KeyId::from_bytes(bytes16(row.try_get("id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        name: row.try_get("name")?,
        environment,
        truncated: row.try_get("truncated")?,
        digest: LookupDigest::from_bytes(bytes32(row.try_get("digest")?)?),
        pepper_id: PepperId(pepper_id),
        secret_hash: row.try_get("secret_hash")?,
        scopes,
        rate_limit,
        metadata,
        created_at: Timestamp(row.try_get("created_at")?),
        created_by: optional_key_id(row, "created_by")?,
        updated_at: Timestamp(row.try_get("updated_at")?),
        expires_at: optional_time(row, "expires_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
        revocation,
        rotated_from: optional_key_id(row, "rotated_from")?,
        rotated_to: optional_key_id(row, "rotated_to")?,
        deleted_at: optional_time(row, "deleted_at")?,
        last_used_at: optional_time(row, "last_used_at")?,
        last_used_ip: row.try_get("last_used_ip")?,
        owner_id: optional_user_id(row, "owner_id")?,
        created_by_user: optional_user_id(row, "created_by_user")?,
    })
}

pub(super) fn audit_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let action = AuditAction::from_label(&row.try_get::<String, _>("action")?)
        .ok_or_else(|| corrupt("unknown audit action"))?;
    let details = serde_json::from_str(&row.try_get::<String, _>("details")?)
        .map_err(|_| corrupt("audit details are not JSON"))?;
    Ok(AuditRecord {
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        seq: u64_of(row.try_get("seq")?)?,
        at: Timestamp(row.try_get("at")?),
        action,
        format: u8::try_from(row.try_get::<i64, _>("format")?)
            .map_err(|_| corrupt("audit format out of range"))?,
        actor_key_id: optional_key_id(row, "actor_key_id")?,
        actor_user_id: optional_user_id(row, "actor_user_id")?,
        target_key_id: optional_key_id(row, "target_key_id")?,
        target_user_id: optional_user_id(row, "target_user_id")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        details,
        prev_hash: bytes32(row.try_get("prev_hash")?)?,
        hash: bytes32(row.try_get("hash")?)?,
    })
}
