//! The events webhooks announce, and how an audited change becomes one (pure).
//!
//! Every change an event announces is audited, so the store turns the audit note into the event
//! inside the same transaction ([`event_for`], called by the journal): an event exists exactly
//! when its change committed. Events that no change causes (an expiry passing, a key rate
//! limited) are made by their background tasks with [`NewEvent::new`] and written the same way.
//!
//! The body is the Standard Webhooks shape, `{"type", "timestamp", "data"}`, serialized once
//! here: those bytes are what is stored, signed and sent on every attempt.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{EventId, OrgId};
use serde_json::{Value, json};

use super::StoreError;
use super::lifecycle::AuditNote;
use super::records::{AuditAction, AuditContext};
use crate::timestamps::rfc3339;

/// What an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A key was created.
    KeyCreated,
    /// A key's name, scopes, expiry, rate limit or metadata changed.
    KeyUpdated,
    /// A key was replaced by a new one (the old one works for the grace period).
    KeyRotated,
    /// A key was revoked (with the reason).
    KeyRevoked,
    /// A key was reported as leaked and revoked (where it was found, who reported it).
    KeyLeaked,
    /// A key expires soon (by default 7 days and 1 day before).
    KeyExpiring,
    /// A key's expiry passed.
    KeyExpired,
    /// A key was refused with 429 for the first time in an hour.
    KeyRateLimited,
    /// A member left the organization (their keys revoked or transferred).
    MemberRemoved,
    /// An endpoint was disabled after failing for 5 days (sent to the organization's others).
    WebhookDisabled,
}

impl EventType {
    /// Every type, in the order the API documents them.
    pub const ALL: [EventType; 10] = [
        EventType::KeyCreated,
        EventType::KeyUpdated,
        EventType::KeyRotated,
        EventType::KeyRevoked,
        EventType::KeyLeaked,
        EventType::KeyExpiring,
        EventType::KeyExpired,
        EventType::KeyRateLimited,
        EventType::MemberRemoved,
        EventType::WebhookDisabled,
    ];

    /// The name in the body's `type` and in an endpoint's list of events.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyUpdated => "key.updated",
            EventType::KeyRotated => "key.rotated",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyLeaked => "key.leaked",
            EventType::KeyExpiring => "key.expiring",
            EventType::KeyExpired => "key.expired",
            EventType::KeyRateLimited => "key.rate_limited",
            EventType::MemberRemoved => "member.removed",
            EventType::WebhookDisabled => "webhook.disabled",
        }
    }

    /// The type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// An event to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its id (`webhook-id`).
    pub id: EventId,
    /// The organization whose endpoints receive it.
    pub org: OrgId,
    /// What it announces.
    pub kind: EventType,
    /// The body, exactly as signed and sent.
    pub body: String,
}

impl NewEvent {
    /// An event of `kind` at `now` with `data` as its body's `data`.
    pub fn new(
        org: OrgId,
        kind: EventType,
        data: Value,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let body = json!({
            "type": kind.as_str(),
            "timestamp": rfc3339(now),
            "data": data,
        });
        Ok(NewEvent {
            id: EventId::generate()
                .map_err(|error| StoreError::Corrupt(format!("CSPRNG: {error}")))?,
            org,
            kind,
            body: body.to_string(),
        })
    }
}

/// The event an audited change announces, if any: `data` carries the organization, the key or
/// member, who did it (key, user, request id) and the audit record's facts.
pub fn event_for(
    org: OrgId,
    note: &AuditNote,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Option<NewEvent>, StoreError> {
    let kind = match note.action {
        AuditAction::KeyCreated => EventType::KeyCreated,
        AuditAction::KeyUpdated => EventType::KeyUpdated,
        AuditAction::KeyRotated => EventType::KeyRotated,
        // Revoking a revoked key again changes nothing: nothing to announce.
        AuditAction::KeyRevoked if note.details["already_revoked"] == json!(true) => {
            return Ok(None);
        }
        AuditAction::KeyRevoked => EventType::KeyRevoked,
        AuditAction::MemberRemoved => EventType::MemberRemoved,
        _ => return Ok(None),
    };
    let mut data = json!({
        "organization_id": org,
        "actor": {
            "key_id": context.actor,
            "user_id": context.actor_user,
            "request_id": context.request_id,
        },
    });
    if let Some(key) = note.target {
        data["key_id"] = json!(key);
    }
    if let Some(user) = note.target_user {
        data["user_id"] = json!(user);
    }
    match kind {
        EventType::KeyCreated => data["key"] = note.details.clone(),
        EventType::KeyRevoked => {
            data["reason"] = note.details["reason"].clone();
            data["note"] = note.details["note"].clone();
        }
        _ => data["details"] = note.details.clone(),
    }
    NewEvent::new(org, kind, data, now).map(Some)
}

/// The data of a `webhook.disabled` event.
pub fn disabled_data(org: OrgId, endpoint: &str, url: &str, since: Timestamp) -> Value {
    json!({
        "organization_id": org,
        "webhook_id": endpoint,
        "url": url,
        "failing_since": rfc3339(since),
    })
}

#[cfg(test)]
mod tests {
    use keyplane_shared::ids::KeyId;

    use super::*;

    fn context() -> AuditContext {
        AuditContext {
            actor: None,
            actor_user: None,
            request_id: "req_test".into(),
            ..AuditContext::default()
        }
    }

    fn note(action: AuditAction, details: Value) -> AuditNote {
        AuditNote {
            action,
            target: Some(KeyId::from_bytes([7; 16])),
            target_user: None,
            details,
        }
    }

    #[test]
    fn every_type_round_trips_through_its_name() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventType::parse("key.deleted"), None);
    }

    #[test]
    fn a_revocation_is_announced_with_its_reason_and_a_repeat_is_not() {
        let org = OrgId::from_bytes([1; 16]);
        let revoked = note(
            AuditAction::KeyRevoked,
            json!({"already_revoked": false, "reason": "compromised", "note": "pasted"}),
        );
        let event = event_for(org, &revoked, &context(), Timestamp(0))
            .expect("event")
            .expect("announced");
        let body: Value = serde_json::from_str(&event.body).expect("json");
        assert_eq!(body["type"], "key.revoked");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["reason"], "compromised");
        assert_eq!(body["data"]["actor"]["request_id"], "req_test");
        assert_eq!(body["data"]["key_id"], json!(revoked.target));
        let again = note(AuditAction::KeyRevoked, json!({"already_revoked": true}));
        assert_eq!(
            event_for(org, &again, &context(), Timestamp(0)).expect("ok"),
            None
        );
        let deleted = note(AuditAction::KeyDeleted, json!({}));
        assert_eq!(
            event_for(org, &deleted, &context(), Timestamp(0)).expect("ok"),
            None
        );
    }
}
