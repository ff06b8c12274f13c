//! The lifecycle rules on records built by hand: no database, no clock.

use keyplane_shared::ids::{KeyId, OrgId};
use keyplane_shared::{Environment, LookupDigest, PepperId, RateLimit, ScopeSet, Timestamp};
use serde_json::{Map, json};

use super::*;
use crate::ceiling::RateLimitCeiling;
use crate::store::records::Reach;

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const HOUR: i64 = 3_600_000;

fn scopes(list: &[&str]) -> ScopeSet {
    ScopeSet::parse(list.iter().copied()).expect("valid scopes")
}

fn key(name: &str) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate().expect("id"),
        org_id: OrgId::from_bytes([7; 16]),
        name: name.to_owned(),
        environment: Environment::Live,
        truncated: "sk_live_abc…WXYZ".to_owned(),
        digest: LookupDigest::from_bytes([1; 32]),
        pepper_id: PepperId(1),
        secret_hash: "$argon2id$placeholder".to_owned(),
        scopes: scopes(&["contacts:read"]),
        rate_limit: None,
        metadata: Map::new(),
        created_at: Timestamp(NOW.as_millis() - HOUR),
        created_by: None,
        updated_at: Timestamp(NOW.as_millis() - HOUR),
        expires_at: None,
        revoked_at: None,
        revocation: None,
        rotated_from: None,
        rotated_to: None,
        deleted_at: None,
        last_used_at: None,
        last_used_ip: None,
        owner_id: None,
        created_by_user: None,
    }
}

fn caller(list: &[&str]) -> AuditContext {
    AuditContext {
        reach: Reach::within(&scopes(list)),
        ..AuditContext::default()
    }
}

fn successor_of(old: &KeyRecord) -> NewKey {
    NewKey {
        id: KeyId::generate().expect("id"),
        org_id: old.org_id,
        name: "ignored".to_owned(),
        environment: old.environment,
        truncated: "sk_live_new…ABCD".to_owned(),
        digest: LookupDigest::from_bytes([2; 32]),
        pepper_id: PepperId(1),
        secret_hash: "$argon2id$other".to_owned(),
        scopes: ScopeSet::default(),
        rate_limit: None,
        metadata: Map::new(),
        expires_at: None,
        created_by: None,
        created_by_user: None,
        owner_id: None,
    }
}

fn rotation(old: &KeyRecord, grace_millis: i64, ceiling: RateLimitCeiling) -> Rotation {
    Rotation {
        successor: successor_of(old),
        expiry: SuccessorExpiry::SameLifetime,
        grace_millis,
        max_rate_limit: ceiling,
    }
}

#[test]
fn reach_hides_deleted_keys_and_keys_holding_more_than_the_caller() {
    let mut deleted = key("gone");
    deleted.deleted_at = Some(NOW);
    assert!(matches!(
        reach(Some(deleted), &caller(&["admin:full"])),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        reach(None, &caller(&["admin:full"])),
        Err(StoreError::NotFound)
    ));
    let wide = key("wide");
    assert!(matches!(
        reach(Some(wide.clone()), &caller(&["usage:read"])),
        Err(StoreError::OutOfReach)
    ));
    let reached = reach(Some(wide.clone()), &caller(&["contacts:read"])).expect("in reach");
    assert_eq!(reached, wide);
}

#[test]
fn a_key_changes_only_while_active_and_not_rotated() {
    let active = key("active");
    assert_eq!(active.check_changeable(NOW), Ok(()));
    let mut revoked = key("revoked");
    revoked.revoked_at = Some(NOW);
    assert_eq!(revoked.check_changeable(NOW), Err(Conflict::Revoked));
    let mut expired = key("expired");
    expired.expires_at = Some(NOW);
    assert_eq!(expired.check_changeable(NOW), Err(Conflict::Expired));
    let mut rotated = key("rotated");
    rotated.rotated_to = Some(KeyId::generate().expect("id"));
    rotated.expires_at = Some(NOW.plus_millis(HOUR));
    assert_eq!(rotated.check_changeable(NOW), Err(Conflict::AlreadyRotated));
    // Revoked wins over expired and rotated: the most final state is the one reported.
    rotated.revoked_at = Some(NOW);
    assert_eq!(rotated.check_changeable(NOW), Err(Conflict::Revoked));
}

#[test]
fn an_edit_changes_only_the_named_fields_and_audits_before_and_after() {
    let before = key("old name");
    let changes = KeyChanges {
        name: Some("new name".to_owned()),
        expires_at: Some(Some(NOW.plus_millis(HOUR))),
        ..KeyChanges::default()
    };
    let edit = edit(&before, changes, NOW).expect("changeable");
    assert_eq!(edit.key.name, "new name");
    assert_eq!(edit.key.expires_at, Some(NOW.plus_millis(HOUR)));
    assert_eq!(edit.key.scopes, before.scopes);
    assert_eq!(edit.key.id, before.id);
    assert_eq!(edit.audit.action, AuditAction::KeyUpdated);
    assert_eq!(edit.audit.target, Some(before.id));
    assert_eq!(edit.audit.details["before"]["name"], "old name");
    assert_eq!(edit.audit.details["after"]["name"], "new name");
    assert_eq!(
        edit.audit.details["after"]["expires_at"],
        json!(NOW.as_millis() + HOUR)
    );
}

#[test]
fn an_edit_clears_an_expiry_and_a_limit_when_asked() {
    let mut before = key("limited");
    before.expires_at = Some(NOW.plus_millis(HOUR));
    before.rate_limit = Some(RateLimit::new(60, 5).expect("limit"));
    let changes = KeyChanges {
        expires_at: Some(None),
        rate_limit: Some(None),
        ..KeyChanges::default()
    };
    let edit = edit(&before, changes, NOW).expect("changeable");
    assert_eq!(edit.key.expires_at, None);
    assert_eq!(edit.key.rate_limit, None);
}

#[test]
fn a_revoked_expired_or_rotated_key_cannot_be_edited() {
    let mut expired = key("expired");
    expired.expires_at = Some(Timestamp(NOW.as_millis() - 1));
    let revive = KeyChanges {
        expires_at: Some(None),
        ..KeyChanges::default()
    };
    assert_eq!(edit(&expired, revive.clone(), NOW), Err(Conflict::Expired));
    let mut rotated = key("rotated");
    rotated.rotated_to = Some(KeyId::generate().expect("id"));
    assert_eq!(edit(&rotated, revive, NOW), Err(Conflict::AlreadyRotated));
}

#[test]
fn a_rotation_without_grace_revokes_the_old_key_and_copies_its_settings() {
    let mut old = key("billing");
    old.metadata.insert("team".into(), json!("payments"));
    old.expires_at = Some(NOW.plus_millis(24 * HOUR));
    old.rate_limit = Some(RateLimit::new(600, 20).expect("limit"));
    let plan = rotate(&old, rotation(&old, 0, RateLimitCeiling::default()), NOW).expect("plan");
    assert_eq!(plan.successor.name, "billing");
    assert_eq!(plan.successor.scopes, old.scopes);
    assert_eq!(plan.successor.metadata, old.metadata);
    // The old key's lifetime (made an hour ago, expiring in a day: 25 hours) from now.
    assert_eq!(plan.successor.expires_at, Some(NOW.plus_millis(25 * HOUR)));
    assert_eq!(plan.successor.rate_limit, old.rate_limit);
    assert_eq!(plan.retired.rotated_to, Some(plan.successor.id));
    assert_eq!(plan.retired.revoked_at, Some(NOW));
    let revocation = plan.retired.revocation.clone().expect("revoked");
    assert_eq!(revocation.reason, RevocationReason::Replaced);
    assert_eq!(
        revocation.note,
        Some(format!("rotated to {}", plan.successor.id))
    );
    // The successor's own secrets are the ones given, not the old key's.
    assert_ne!(plan.successor.digest, old.digest);
}

#[test]
fn a_grace_period_ends_the_old_key_but_never_extends_its_life() {
    let old = key("no expiry");
    let plan = rotate(&old, rotation(&old, HOUR, RateLimitCeiling::default()), NOW).expect("plan");
    assert_eq!(plan.retired.expires_at, Some(NOW.plus_millis(HOUR)));
    assert_eq!(plan.retired.revoked_at, None);

    let mut soon = key("expires soon");
    soon.expires_at = Some(NOW.plus_millis(60_000));
    let plan = rotate(
        &soon,
        rotation(&soon, HOUR, RateLimitCeiling::default()),
        NOW,
    )
    .expect("plan");
    assert_eq!(plan.retired.expires_at, Some(NOW.plus_millis(60_000)));
}

#[test]
fn a_rotation_lowers_a_copied_limit_to_the_ceiling() {
    let mut old = key("fast");
    old.rate_limit = Some(RateLimit::new(6_000, 500).expect("limit"));
    let ceiling = RateLimitCeiling::new(RateLimit::new(1_000, 100).expect("limit"));
    let plan = rotate(&old, rotation(&old, 0, ceiling), NOW).expect("plan");
    assert_eq!(
        plan.successor.rate_limit,
        Some(RateLimit::new(1_000, 100).expect("limit"))
    );
}

#[test]
fn a_rotated_key_cannot_be_rotated_again() {
    let mut old = key("rotated");
    old.rotated_to = Some(KeyId::generate().expect("id"));
    old.expires_at = Some(NOW.plus_millis(HOUR));
    let refused = rotate(&old, rotation(&old, 0, RateLimitCeiling::default()), NOW);
    assert!(matches!(refused, Err(Conflict::AlreadyRotated)));
}

#[test]
fn the_rotation_audit_names_the_successor_and_the_old_key_s_end() {
    let old = key("billing");
    let plan = rotate(
        &old,
        rotation(&old, 90_000, RateLimitCeiling::default()),
        NOW,
    )
    .expect("plan");
    let mut successor = old.clone();
    successor.id = plan.successor.id;
    let note = rotation_audit(&plan.retired, &successor, plan.grace_millis);
    assert_eq!(note.action, AuditAction::KeyRotated);
    assert_eq!(note.target, Some(old.id));
    assert_eq!(note.details["grace_seconds"], 90);
    assert_eq!(note.details["old_key_revoked"], false);
    assert_eq!(
        note.details["old_key_expires_at"],
        json!(NOW.as_millis() + 90_000)
    );
    assert_eq!(note.details["successor"]["id"], json!(plan.successor.id));
}

#[test]
fn revoking_is_idempotent_and_audited_both_times() {
    let active = key("leaked");
    let leaked = Revocation {
        reason: RevocationReason::Compromised,
        note: Some("posted in a gist".into()),
    };
    let RevokePlan::Revoke(first) = revoke(active, leaked.clone(), NOW) else {
        panic!("an active key is revoked");
    };
    assert_eq!(first.key.revoked_at, Some(NOW));
    assert_eq!(first.key.revocation, Some(leaked.clone()));
    assert_eq!(first.audit.details["already_revoked"], false);
    assert_eq!(first.audit.details["reason"], "compromised");

    let later = Timestamp(NOW.as_millis() + HOUR);
    let again = Revocation {
        reason: RevocationReason::Unused,
        note: None,
    };
    match revoke(first.key.clone(), again, later) {
        RevokePlan::AlreadyRevoked { key, audit } => {
            assert_eq!(key, first.key, "a second revocation changes nothing");
            assert_eq!(audit.action, AuditAction::KeyRevoked);
            assert_eq!(audit.details["already_revoked"], true);
            assert_eq!(audit.details["requested_reason"], "unused");
        }
        RevokePlan::Revoke(_) => panic!("a revoked key is not revoked twice"),
    }
}

#[test]
fn only_revoked_or_expired_keys_are_deleted() {
    let active = key("in use");
    assert_eq!(delete(&active, NOW), Err(Conflict::StillActive));

    let mut expired = key("old");
    expired.expires_at = Some(NOW);
    let deletion = delete(&expired, NOW).expect("expired keys may go");
    assert_eq!(deletion.key.deleted_at, Some(NOW));
    assert_eq!(deletion.audit.details["state"], "expired");
    assert_eq!(deletion.audit.details["name"], "old");

    let mut revoked = key("revoked");
    revoked.revoked_at = Some(NOW);
    assert_eq!(
        delete(&revoked, NOW)
            .expect("revoked keys may go")
            .audit
            .details["state"],
        "revoked"
    );
}

#[test]
fn audit_summaries_carry_no_secret() {
    let key = key("summary");
    let summary = key_summary(&key).to_string();
    assert!(!summary.contains(&key.secret_hash));
    assert!(!summary.contains("digest"));
    assert!(summary.contains(&key.truncated));
    let created = creation(&key);
    assert_eq!(created.action, AuditAction::KeyCreated);
    let org = organization_creation("Acme", &key);
    assert_eq!(org.action, AuditAction::OrgCreated);
    assert_eq!(org.details["org_name"], "Acme");
}
