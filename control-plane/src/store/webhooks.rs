//! Webhooks' storage ([`WebhookStore`], a part of [`super::Store`]): each organization's
//! endpoints, the outbox of events ([`super::outbox`]) and their deliveries and attempts.
//!
//! Endpoint changes are audited in the organization's chain, in the same transaction. Signing
//! secrets are never stored: an endpoint keeps a random salt, from which (with the deployment's
//! signing secret) the webhooks module derives the secret.
//!
//! Deliveries are claimed with a lease (`claimed_until`) by one conditional update per batch
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several instances never send one delivery at
//! the same time, and a claim whose worker died is taken again once its lease ends.

use async_trait::async_trait;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{EventId, KeyId, OrgId, WebhookId};

use super::StoreError;
use super::outbox::EventType;
use super::records::{AuditContext, Page};

pub use crate::secrets::webhook_signing::SALT_LEN;

/// The most endpoints an organization may have.
pub const MAX_WEBHOOKS_PER_ORG: u64 = 20;

/// The most deliveries of one endpoint in flight (claimed, by any instance): a claim takes no
/// more of an endpoint's than its places left, so that an endpoint slow to answer holds only
/// these while its attempts hang, and the claims go on with other endpoints' deliveries. The
/// count is what was committed when the claim starts: instances claiming at once each count
/// without the others' claims.
pub const ENDPOINT_IN_FLIGHT: u32 = 32;

/// The most replaced secrets that sign beside an endpoint's secret: rotating again within 24
/// hours keeps the secrets replaced before signing too (a receiver may still hold any of
/// them, say when the secret a rotation showed was not copied), up to this many; a rotation
/// beyond drops the oldest.
pub const MAX_PREVIOUS_SECRETS: usize = 4;

/// How the `key_notices` rows of a key's `key.expiring` notices begin (`expiring:<lead
/// seconds>`): a change of the key's expiry forgets them, so the new expiry is announced again.
pub const EXPIRING_NOTICE_PREFIX: &str = "expiring:";

/// The `key_notices` row of a key's `key.expired` notice.
pub const EXPIRED_NOTICE: &str = "expired";

/// How the `key_notices` rows of `key.rate_limited` begin (`rate_limited:<hour since the
/// epoch>`): one per key and clock hour.
pub const RATE_LIMITED_NOTICE_PREFIX: &str = "rate_limited:";

/// What one sweep of the webhook history deleted ([`WebhookStore::delete_webhook_history`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookHistorySwept {
    /// Attempts.
    pub attempts: u64,
    /// Deliveries no longer pending (delivered or given up).
    pub deliveries: u64,
    /// Events no delivery refers to any more.
    pub events: u64,
    /// `key.rate_limited` notice rows of past hours.
    pub notices: u64,
    /// `key.expiring` and `key.expired` notice rows of keys whose expiry is long past.
    pub expiry_notices: u64,
}

/// An expiry notice just announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryNotice {
    /// The key.
    pub key_id: KeyId,
    /// Its name.
    pub name: String,
    /// Its truncated form.
    pub truncated: String,
    /// When it expires (or expired).
    pub expires_at: Timestamp,
    /// `Some(ms)`: `key.expiring`, that long before; `None`: `key.expired`.
    pub lead_ms: Option<i64>,
    /// Its owner's email, if it has an owner with one.
    pub owner_email: Option<String>,
}

/// An organization's own expiry notice lead times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryNoticeDays {
    /// Days before a key's expiry that `key.expiring` is announced, longest first (empty: never).
    pub days_before: Vec<u32>,
    /// When they were set.
    pub updated_at: Timestamp,
}

/// A key reported as leaked, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedKey {
    /// The key.
    pub id: KeyId,
    /// Who reported it (`github`, `report`).
    pub source: String,
    /// Where it was found, if the report says.
    pub url: Option<String>,
}

/// An endpoint to store (already validated).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Its id.
    pub id: WebhookId,
    /// Its organization.
    pub org: OrgId,
    /// Where events are posted.
    pub url: String,
    /// What it is for (may be empty).
    pub description: String,
    /// The events it wants (at least one).
    pub events: Vec<EventType>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The salt of its signing secret.
    pub salt: [u8; SALT_LEN],
}

/// Changes to an endpoint (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New events.
    pub events: Option<Vec<EventType>>,
    /// Enabled or disabled (enabling clears a failure streak and the reason it was disabled).
    pub enabled: Option<bool>,
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Its id.
    pub id: WebhookId,
    /// Its organization.
    pub org_id: OrgId,
    /// Where events are posted.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// The events it wants.
    pub events: Vec<EventType>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The current secret's salt.
    pub salt: [u8; SALT_LEN],
    /// The secrets replaced in rotations that may still sign, newest first: each salt with
    /// when it stops signing (24 hours after it was replaced; at most
    /// [`MAX_PREVIOUS_SECRETS`], some of them possibly past their time).
    pub previous: Vec<([u8; SALT_LEN], Timestamp)>,
    /// When deliveries started failing, with no success since.
    pub failing_since: Option<Timestamp>,
    /// When and why it was disabled by Keyplane (failing for too long).
    pub disabled: Option<(Timestamp, String)>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A delivery claimed by a worker, with what sending it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The endpoint.
    pub endpoint: WebhookRecord,
    /// The event.
    pub event_id: EventId,
    /// Its body, as signed and sent.
    pub body: String,
    /// When the event was made (retries stop 24 hours after).
    pub event_at: Timestamp,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started.
    pub at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The answer's status (none: no answer).
    pub status: Option<u16>,
    /// `delivered`, `http_error`, `timeout`, `connect_error`, `refused_address`, ...
    pub outcome: String,
    /// The first bytes of the answer (or the error).
    pub response: String,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// It was delivered.
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// Retries are over (24 hours since the event).
    GiveUp,
}

/// An attempt as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it went.
    pub result: Attempt,
}

/// The storage operations of webhooks.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores an endpoint (audited as `webhook_created`); `Conflict(TooManyWebhooks)` past the
    /// organization's bound.
    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError>;

    /// The organization's endpoints, oldest first.
    async fn webhooks(&self, org: OrgId) -> Result<Vec<WebhookRecord>, StoreError>;

    /// One endpoint of the organization (`NotFound` for another organization's).
    async fn webhook(&self, org: OrgId, id: WebhookId) -> Result<WebhookRecord, StoreError>;

    /// Changes an endpoint (audited as `webhook_updated`).
    async fn update_webhook(
        &self,
        org: OrgId,
        id: WebhookId,
        changes: WebhookChanges,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError>;

    /// Gives an endpoint a new secret salt (audited as `webhook_secret_rotated`); the one it
    /// replaces signs too until `previous_until`, beside those replaced before that still
    /// sign at `now` (see [`MAX_PREVIOUS_SECRETS`]).
    async fn rotate_webhook_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        salt: [u8; SALT_LEN],
        previous_until: Timestamp,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<WebhookRecord, StoreError>;

    /// Removes an endpoint with its deliveries and attempts (audited as `webhook_deleted`).
    async fn delete_webhook(
        &self,
        org: OrgId,
        id: WebhookId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The endpoint's attempts, newest first; `before` continues after an earlier page's last
    /// (its time, event and attempt number).
    async fn webhook_attempts(
        &self,
        org: OrgId,
        id: WebhookId,
        before: Option<(Timestamp, EventId, u32)>,
        limit: u32,
    ) -> Result<Page<AttemptRecord>, StoreError>;

    /// Sends the event to the endpoint again, now (a new delivery if it never had one; one
    /// with an attempt in flight is due again once that attempt is recorded, whatever its
    /// outcome); `NotFound` for an event or endpoint of another organization. Asked for by
    /// `context`'s caller, checked again under the organization's lock as every change of it
    /// is.
    async fn redeliver(
        &self,
        org: OrgId,
        id: WebhookId,
        event: EventId,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Announces the expiry notices now due (`key.expiring` each of the organization's lead
    /// times before a key's expiry, or `default_days` before where it set none; `key.expired`
    /// once it passed), each once however many instances ask, at most `limit` keys per kind;
    /// the notices this call announced.
    async fn announce_expiries(
        &self,
        now: Timestamp,
        default_days: &[u32],
        limit: u32,
    ) -> Result<Vec<ExpiryNotice>, StoreError>;

    /// The organization's own expiry notice lead times; `None` while the defaults apply.
    async fn expiry_notice_days(&self, org: OrgId) -> Result<Option<ExpiryNoticeDays>, StoreError>;

    /// Sets the organization's expiry notice lead times (already validated: distinct, longest
    /// first), audited as `expiry_notices_updated`.
    async fn put_expiry_notice_days(
        &self,
        org: OrgId,
        days_before: &[u32],
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<ExpiryNoticeDays, StoreError>;

    /// Claims up to `limit` due deliveries of enabled endpoints until `lease_until`, oldest
    /// due first, giving no endpoint more than [`ENDPOINT_IN_FLIGHT`] deliveries in flight.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records attempts and what follows each, in one transaction (the attempts that ended
    /// together, in any order of their starts: a failure recorded after a success made later
    /// or in the same millisecond leaves the endpoint as the success did, and a success
    /// recorded after a failure made later leaves it as the failure did).
    /// A failure starts (or continues) the endpoint's failure streak, as `streak` says; when
    /// the streak is older than its `disable_after_ms`, the endpoint is disabled (audited as
    /// `webhook_disabled`, announced as `webhook.disabled`). A success ends the streak. For
    /// each attempt, in order: whether its endpoint was disabled now.
    async fn record_attempts(
        &self,
        attempts: &[(ClaimedDelivery, Attempt, NextStep)],
        streak: FailureStreak,
    ) -> Result<Vec<bool>, StoreError>;

    /// Deletes the webhook history made before `before`: attempts, deliveries no longer
    /// pending, and events no delivery refers to any more (a pending delivery and its event
    /// stay, however old); the `key.rate_limited` notice rows sent before `notices_before`; and
    /// the expiry notice rows of keys whose expiry passed before `notices_before`, or that are
    /// gone (which must be longer ago than the expiry scheduler looks back).
    async fn delete_webhook_history(
        &self,
        before: Timestamp,
        notices_before: Timestamp,
    ) -> Result<WebhookHistorySwept, StoreError>;
}

/// When an endpoint's failed attempts make one streak, and how long a streak disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureStreak {
    /// A streak this old (no success since its first failure) disables the endpoint.
    pub disable_after_ms: i64,
    /// A failure with no attempt this long before it starts a new streak: an endpoint that
    /// failed once a month ago and was sent nothing since is not failing for a month.
    pub idle_gap_ms: i64,
}
