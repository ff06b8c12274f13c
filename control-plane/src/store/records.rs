//! The records the store reads and writes, and the inputs of its mutations.
//!
//! Nothing here holds a plaintext key: a stored key is its truncated form, its lookup digest and
//! its Argon2id hash.

use keyplane_shared::ids::{KeyId, OrgId, UserId};
use keyplane_shared::table::{KeyStatus, TableEntry};
use keyplane_shared::{Environment, LookupDigest, PepperId, RateLimit, ScopeSet, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::audit_action::AuditAction;
use crate::access::{RoleName, ScopeCeiling};
use crate::ceiling::RateLimitCeiling;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    /// Public id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A new organization.
#[derive(Debug, Clone)]
pub struct NewOrg {
    /// Public id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
}

/// Where a key stands, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Usable.
    Active,
    /// Its expiry has passed.
    Expired,
    /// Revoked; irreversible.
    Revoked,
}

impl KeyState {
    /// The label used in the API and the database filters.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

/// Why a key was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// The key leaked or may have.
    Compromised,
    /// A new key took its place.
    Replaced,
    /// Nobody uses it.
    Unused,
    /// Its holder left.
    EmployeeDeparture,
    /// What it served is over.
    ProjectEnded,
    /// Something else (see the note).
    Other,
}

impl RevocationReason {
    /// The label used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Compromised => "compromised",
            RevocationReason::Replaced => "replaced",
            RevocationReason::Unused => "unused",
            RevocationReason::EmployeeDeparture => "employee_departure",
            RevocationReason::ProjectEnded => "project_ended",
            RevocationReason::Other => "other",
        }
    }

    /// Reads a stored label.
    pub fn from_label(label: &str) -> Option<Self> {
        [
            RevocationReason::Compromised,
            RevocationReason::Replaced,
            RevocationReason::Unused,
            RevocationReason::EmployeeDeparture,
            RevocationReason::ProjectEnded,
            RevocationReason::Other,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == label)
    }
}

/// A revocation: why, and an optional note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Why.
    pub reason: RevocationReason,
    /// Free text from the caller.
    pub note: Option<String>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Public id.
    pub id: KeyId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// live or test.
    pub environment: Environment,
    /// `sk_live_abc123...GHIJ`.
    pub truncated: String,
    /// HMAC-SHA256 of the key under the pepper `pepper_id`.
    pub digest: LookupDigest,
    /// Which pepper made `digest`.
    pub pepper_id: PepperId,
    /// Argon2id PHC string: the at-rest verifier.
    pub secret_hash: String,
    /// What it may do.
    pub scopes: ScopeSet,
    /// Per-key limit, when it overrides the deployment's default.
    pub rate_limit: Option<RateLimit>,
    /// Caller-defined labels.
    pub metadata: Map<String, Value>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The management key that created it (none for an organization's first key, and for keys
    /// made by a signed-in user).
    pub created_by: Option<KeyId>,
    /// The user who made it (for a key made with a management key: none).
    pub created_by_user: Option<UserId>,
    /// The user who owns it: its maker, or the owner of the management key that made it, or
    /// whoever it was transferred to (none only before the first owner was set up).
    pub owner_id: Option<UserId>,
    /// Last change to the record.
    pub updated_at: Timestamp,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub revocation: Option<Revocation>,
    /// The key this one replaced.
    pub rotated_from: Option<KeyId>,
    /// The key that replaced this one.
    pub rotated_to: Option<KeyId>,
    /// When it was removed from listings.
    pub deleted_at: Option<Timestamp>,
    /// Last request the edge reported.
    pub last_used_at: Option<Timestamp>,
    /// Client address of that request.
    pub last_used_ip: Option<String>,
}

impl KeyRecord {
    /// Its state at `now`.
    pub fn state(&self, now: Timestamp) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|expiry| now >= expiry) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// What the edge's table holds for it (nothing secret).
    pub fn table_entry(&self) -> TableEntry {
        TableEntry {
            digest: self.digest,
            key_id: self.id,
            org_id: self.org_id,
            env: self.environment,
            status: if self.revoked_at.is_some() {
                KeyStatus::Revoked
            } else {
                KeyStatus::Active
            },
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
            rate_limit: self.rate_limit,
        }
    }
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Public id.
    pub id: KeyId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name (validated).
    pub name: String,
    /// live or test.
    pub environment: Environment,
    /// Truncated display form.
    pub truncated: String,
    /// Lookup digest.
    pub digest: LookupDigest,
    /// Pepper of the digest.
    pub pepper_id: PepperId,
    /// Argon2id PHC string.
    pub secret_hash: String,
    /// Scopes (validated against the creator's).
    pub scopes: ScopeSet,
    /// Rate-limit override.
    pub rate_limit: Option<RateLimit>,
    /// Caller-defined labels.
    pub metadata: Map<String, Value>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Creating management key.
    pub created_by: Option<KeyId>,
    /// Creating user.
    pub created_by_user: Option<UserId>,
    /// Owner.
    pub owner_id: Option<UserId>,
}

/// Fields of an update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    /// New name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<ScopeSet>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<Timestamp>>,
    /// New rate limit (`Some(None)`: back to the default).
    pub rate_limit: Option<Option<RateLimit>>,
    /// New metadata (replaces the old).
    pub metadata: Option<Map<String, Value>>,
}

impl KeyChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.scopes.is_none()
            && self.expires_at.is_none()
            && self.rate_limit.is_none()
            && self.metadata.is_none()
    }
}

/// A rotation: the successor, and how long the old key keeps working.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The successor. Its name, scopes, limit and metadata are copied from the old key by the
    /// store, its expiry set by [`Rotation::expiry`]; the fields given here for them are
    /// ignored.
    pub successor: NewKey,
    /// When the successor expires.
    pub expiry: SuccessorExpiry,
    /// Grace period in milliseconds (0: the old key stops at once).
    pub grace_millis: i64,
    /// The operator's ceiling: the copied rate limit is lowered to it where it exceeds it.
    pub max_rate_limit: RateLimitCeiling,
}

/// When a rotation's successor expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessorExpiry {
    /// The old key's lifetime (its expiry less its creation), counted from the rotation; never
    /// for a key that never expires. So rotating a key that is about to expire gives a key
    /// with as long to live as the old one had, not one that expires with it.
    SameLifetime,
    /// As given (`None`: never).
    At(Option<Timestamp>),
}

/// What a revoke call did.
#[derive(Debug, Clone)]
pub enum RevokeOutcome {
    /// The key is now revoked.
    Revoked(KeyRecord),
    /// It already was; nothing changed.
    AlreadyRevoked(KeyRecord),
}

/// Listing filters and the page to read.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Only keys in this state.
    pub state: Option<KeyState>,
    /// Only keys of this environment.
    pub environment: Option<Environment>,
    /// Only keys whose name contains this (case-insensitive).
    pub name_contains: Option<String>,
    /// `Some(true)`: only keys never used; `Some(false)`: only keys used at least once.
    pub never_used: Option<bool>,
    /// Only keys not used since this time (keys never used included).
    pub last_used_before: Option<Timestamp>,
    /// Only keys whose last use came from this client address.
    pub last_used_ip: Option<String>,
    /// Only keys used, whose last use came from none of these addresses (the expected ones).
    pub last_used_ip_not: Vec<String>,
    /// Only keys this user owns.
    pub owner: Option<UserId>,
    /// Continue after this key (created_at, id) of a previous page.
    pub after: Option<(Timestamp, KeyId)>,
    /// Page size.
    pub limit: u32,
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more items follow the last one.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The page of `limit` items from `items` read with one more than `limit` (that one, if
    /// present, only says more follow).
    pub fn from_overfetch(mut items: Vec<T>, limit: u32) -> Self {
        let limit = limit as usize;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Page { items, has_more }
    }
}

/// Which keys a caller may change: those whose scopes its ceiling allows, and, for a caller
/// that manages only its own keys, those it owns.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The caller's ceiling: the store refuses to change a key that holds more.
    pub ceiling: ScopeCeiling,
    /// `Some`: only keys this user owns.
    pub owner: Option<UserId>,
}

impl Default for Reach {
    /// Reaches nothing.
    fn default() -> Self {
        Reach {
            ceiling: ScopeCeiling::nothing(),
            owner: None,
        }
    }
}

impl Reach {
    /// Keys holding only scopes covered by `scopes`, whoever owns them.
    pub fn within(scopes: &ScopeSet) -> Self {
        Reach {
            ceiling: ScopeCeiling::Only(scopes.clone()),
            owner: None,
        }
    }
}

/// Who is calling and from where: for the audit log, and to keep a caller's reach within its
/// own scopes (and, for some roles, its own keys).
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    /// The management key that made the call.
    pub actor: Option<KeyId>,
    /// The user who made the call (signed in, by a host product's token, or the owner of the
    /// management key).
    pub actor_user: Option<UserId>,
    /// The keys the caller may change.
    pub reach: Reach,
    /// The role a person signed in with a session was authenticated with (`None` for other
    /// callers): the store checks under the organization's lock that `actor_user` is still a
    /// member with that role, and with the ceiling `reach` holds (see `sql::journal`).
    pub session_role: Option<RoleName>,
    /// Client address.
    pub ip: Option<String>,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: String,
}

/// A refused management call (or a count of them) to record as `auth_failed`.
#[derive(Debug, Clone)]
pub struct FailedAuth {
    /// Why, and how many refusals the record stands for (see [`crate::audit::refusals`]).
    pub details: Value,
    /// The refused key (the record's actor and target) and where the call came from.
    pub context: AuditContext,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Organization.
    pub org_id: OrgId,
    /// Position in the organization's chain, from 1.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// What.
    pub action: AuditAction,
    /// The format the chain sealed it in: 1 before users existed, 2 with the user fields.
    pub format: u8,
    /// Who (the management key).
    pub actor_key_id: Option<KeyId>,
    /// Who (the user; format 2).
    pub actor_user_id: Option<UserId>,
    /// Which key it concerned.
    pub target_key_id: Option<KeyId>,
    /// Which member it concerned (format 2).
    pub target_user_id: Option<UserId>,
    /// Client address.
    pub ip: Option<String>,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: String,
    /// Action-specific facts (JSON object).
    pub details: Value,
    /// Hash of the previous record (zeros for the first).
    pub prev_hash: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
}

/// Audit listing filters and the page to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only records about this key.
    pub target: Option<KeyId>,
    /// Only records before this sequence number (the previous page's last).
    pub before_seq: Option<u64>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only records before this time.
    pub until: Option<Timestamp>,
    /// Page size.
    pub limit: u32,
}
