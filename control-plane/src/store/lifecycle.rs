//! The rules of a key's life, as pure functions over its record: who may act on a key, which
//! changes its state allows, what a rotation, revocation or deletion makes of it, and what the
//! audit log says about each. No database here: the store locks the organization, loads the
//! record, asks these rules, then saves what they return and appends the audit note they wrote,
//! all in one transaction (see [`super::sql`]).
//!
//! - Reach: a deleted key is not found; a key holding a scope the caller lacks is out of reach.
//! - A key may change (edit in place, rotate) only while it is not revoked, not expired and not
//!   already rotated (its successor is the one to change).
//! - A rotation copies the old key's settings to its successor (the rate limit lowered to the
//!   operator's ceiling) and either revokes the old key at once (no grace) or lets it expire at
//!   the end of the grace period, never later than its own expiry.
//! - Revoking a revoked key changes nothing and is audited as such.
//! - Only a revoked or expired key may be deleted.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, UserId};
use serde_json::{Value, json};

use super::records::{
    AuditAction, AuditContext, KeyChanges, KeyRecord, KeyState, NewKey, Revocation,
    RevocationReason, Rotation, SuccessorExpiry,
};
use super::{Conflict, StoreError};

#[cfg(test)]
mod tests;

/// What an audit record will say, before the store seals it with its caller's context.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    /// What happened.
    pub action: AuditAction,
    /// The key it concerned.
    pub target: Option<KeyId>,
    /// The member it concerned.
    pub target_user: Option<UserId>,
    /// The action's facts (a JSON object; never a secret).
    pub details: Value,
}

/// A key's record after a change, and the audit note that describes the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The record to save.
    pub key: KeyRecord,
    /// What the audit log records.
    pub audit: AuditNote,
}

/// What a rotation makes: the successor to insert and the old key's record to save.
#[derive(Debug, Clone)]
pub struct RotationPlan {
    /// The successor, with the old key's settings.
    pub successor: NewKey,
    /// The old key, pointing at its successor, revoked or ending with the grace period.
    pub retired: KeyRecord,
    /// The grace period asked for, in milliseconds (for the audit note).
    pub grace_millis: i64,
}

/// What revoking does to a key.
#[derive(Debug, Clone, PartialEq)]
pub enum RevokePlan {
    /// The key becomes revoked: save it.
    Revoke(Transition),
    /// It already was: nothing to save, but the repeated call is audited.
    AlreadyRevoked {
        /// The key, unchanged.
        key: KeyRecord,
        /// The audit note of the repeated call.
        audit: AuditNote,
    },
}

impl KeyRecord {
    /// Whether the key may still change (be edited in place or rotated) at `now`: not revoked,
    /// not already rotated (its successor is the key to change), not expired. The store checks
    /// this under the organization's lock; the rotate handler checks it first as well, so a
    /// refused rotation never spends an Argon2id hash.
    pub fn check_changeable(&self, now: Timestamp) -> Result<(), Conflict> {
        if self.revoked_at.is_some() {
            Err(Conflict::Revoked)
        } else if self.state(now) == KeyState::Expired {
            Err(Conflict::Expired)
        } else if self.rotated_to.is_some() {
            Err(Conflict::AlreadyRotated)
        } else {
            Ok(())
        }
    }
}

/// The key the caller may act on: present, not deleted, holding no scope beyond the caller's
/// ceiling, and, for a caller that manages only its own keys, owned by it.
pub fn reach(key: Option<KeyRecord>, caller: &AuditContext) -> Result<KeyRecord, StoreError> {
    let key = key
        .filter(|key| key.deleted_at.is_none())
        .ok_or(StoreError::NotFound)?;
    if let Some(owner) = caller.reach.owner
        && key.owner_id != Some(owner)
    {
        return Err(StoreError::NotOwner);
    }
    if !caller.reach.ceiling.allows_all(&key.scopes) {
        return Err(StoreError::OutOfReach);
    }
    Ok(key)
}

/// The audit note of a new key.
pub fn creation(key: &KeyRecord) -> AuditNote {
    AuditNote {
        action: AuditAction::KeyCreated,
        target: Some(key.id),
        target_user: None,
        details: key_summary(key),
    }
}

/// The audit note of a new organization and its first admin key.
pub fn organization_creation(org_name: &str, admin: &KeyRecord) -> AuditNote {
    AuditNote {
        action: AuditAction::OrgCreated,
        target: Some(admin.id),
        target_user: None,
        details: json!({ "org_name": org_name, "admin_key": key_summary(admin) }),
    }
}

/// An edit in place: the fields `changes` names, on a key that may still change.
pub fn edit(
    before: &KeyRecord,
    changes: KeyChanges,
    now: Timestamp,
) -> Result<Transition, Conflict> {
    before.check_changeable(now)?;
    let mut after = before.clone();
    if let Some(name) = changes.name {
        after.name = name;
    }
    if let Some(scopes) = changes.scopes {
        after.scopes = scopes;
    }
    if let Some(expires_at) = changes.expires_at {
        after.expires_at = expires_at;
    }
    if let Some(rate_limit) = changes.rate_limit {
        after.rate_limit = rate_limit;
    }
    if let Some(metadata) = changes.metadata {
        after.metadata = metadata;
    }
    let audit = AuditNote {
        action: AuditAction::KeyUpdated,
        target: Some(before.id),
        target_user: None,
        details: json!({ "before": key_summary(before), "after": key_summary(&after) }),
    };
    Ok(Transition { key: after, audit })
}

/// A rotation of `old` (which must still be changeable) into `rotation.successor`.
pub fn rotate(
    old: &KeyRecord,
    rotation: Rotation,
    now: Timestamp,
) -> Result<RotationPlan, Conflict> {
    old.check_changeable(now)?;
    let expires_at = match rotation.expiry {
        SuccessorExpiry::SameLifetime => old.expires_at.map(|expiry| {
            let lifetime = expiry
                .as_millis()
                .saturating_sub(old.created_at.as_millis());
            // Held to the latest time RFC 3339 can write (a key made to expire at the end of
            // year 9999 would otherwise have successors past it).
            now.plus_millis(lifetime).min(crate::timestamps::LATEST)
        }),
        SuccessorExpiry::At(at) => at,
    };
    let successor = NewKey {
        name: old.name.clone(),
        scopes: old.scopes.clone(),
        rate_limit: old
            .rate_limit
            .map(|limit| rotation.max_rate_limit.cap(limit)),
        metadata: old.metadata.clone(),
        expires_at,
        // The successor stays with the old key's owner, whoever rotates it.
        owner_id: old.owner_id,
        ..rotation.successor
    };
    let mut retired = old.clone();
    retired.rotated_to = Some(successor.id);
    if rotation.grace_millis > 0 {
        // The grace period never extends the old key's own life.
        let grace_end = now.plus_millis(rotation.grace_millis);
        retired.expires_at = Some(old.expires_at.map_or(grace_end, |own| own.min(grace_end)));
    } else {
        retired.revoked_at = Some(now);
        retired.revocation = Some(Revocation {
            reason: RevocationReason::Replaced,
            note: Some(format!("rotated to {}", successor.id)),
        });
    }
    Ok(RotationPlan {
        successor,
        retired,
        grace_millis: rotation.grace_millis,
    })
}

/// The audit note of a rotation, once both keys are stored.
pub fn rotation_audit(retired: &KeyRecord, successor: &KeyRecord, grace_millis: i64) -> AuditNote {
    AuditNote {
        action: AuditAction::KeyRotated,
        target: Some(retired.id),
        target_user: None,
        details: json!({
            "successor": key_summary(successor),
            "grace_seconds": grace_millis / 1000,
            "old_key_expires_at": retired.expires_at.map(Timestamp::as_millis),
            "old_key_revoked": retired.revoked_at.is_some(),
        }),
    }
}

/// A revocation: the key becomes revoked, or already was (idempotent, audited either way).
pub fn revoke(key: KeyRecord, revocation: Revocation, now: Timestamp) -> RevokePlan {
    let target = Some(key.id);
    if key.revoked_at.is_some() {
        let details = json!({
            "already_revoked": true,
            "requested_reason": revocation.reason.as_str(),
            "requested_note": revocation.note,
        });
        let audit = AuditNote {
            action: AuditAction::KeyRevoked,
            target,
            target_user: None,
            details,
        };
        return RevokePlan::AlreadyRevoked { key, audit };
    }
    let details = json!({
        "already_revoked": false,
        "reason": revocation.reason.as_str(),
        "note": revocation.note,
    });
    let mut revoked = key;
    revoked.revoked_at = Some(now);
    revoked.revocation = Some(revocation);
    RevokePlan::Revoke(Transition {
        key: revoked,
        audit: AuditNote {
            action: AuditAction::KeyRevoked,
            target,
            target_user: None,
            details,
        },
    })
}

/// A deletion (hiding from listings): only of a revoked or expired key.
pub fn delete(key: &KeyRecord, now: Timestamp) -> Result<Transition, Conflict> {
    let state = key.state(now);
    if state == KeyState::Active {
        return Err(Conflict::StillActive);
    }
    let mut deleted = key.clone();
    deleted.deleted_at = Some(now);
    let audit = AuditNote {
        action: AuditAction::KeyDeleted,
        target: Some(key.id),
        target_user: None,
        details: json!({ "state": state.as_str(), "name": key.name }),
    };
    Ok(Transition {
        key: deleted,
        audit,
    })
}

/// The non-secret facts of a key, as audit details.
pub fn key_summary(key: &KeyRecord) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "environment": key.environment.as_str(),
        "truncated": key.truncated,
        "scopes": key.scopes,
        "expires_at": key.expires_at.map(Timestamp::as_millis),
        "rate_limit": key.rate_limit.map(|limit| json!({
            "requests_per_minute": limit.requests_per_minute(),
            "burst": limit.burst(),
        })),
        "metadata": key.metadata,
    })
}
