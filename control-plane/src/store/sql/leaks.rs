//! Keys reported as leaked, revoked together: one transaction per organization (so a report's
//! revocations reach the edges as one batch of changes), each revocation audited and announced
//! as `key.revoked` and `key.leaked` in that transaction.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::OrgId;
use serde_json::json;

use super::SqlStore;
use super::journal::OrgMutation;
use super::keys::{load_key, save_key};
use super::outbox;
use crate::store::StoreError;
use crate::store::lifecycle::{self, RevokePlan};
use crate::store::outbox::{EventType, NewEvent};
use crate::store::records::{AuditContext, Revocation, RevocationReason};
use crate::store::webhooks::LeakedKey;

/// The note a leaked key's revocation carries.
fn leak_note(leak: &LeakedKey) -> String {
    match &leak.url {
        Some(url) => format!("reported as leaked by {} at {url}", leak.source),
        None => format!("reported as leaked by {}", leak.source),
    }
}

pub(super) async fn revoke_leaked(
    store: &SqlStore,
    org: OrgId,
    leaks: Vec<LeakedKey>,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Vec<bool>, StoreError> {
    let mut mutation = OrgMutation::begin(store, org).await?;
    let mut revoked = Vec::with_capacity(leaks.len());
    for leak in &leaks {
        // A deleted key (revoked or expired before it was) is gone: nothing to revoke or
        // announce.
        let Some(key) = load_key(mutation.connection(), org, leak.id)
            .await?
            .filter(|key| key.deleted_at.is_none())
        else {
            revoked.push(false);
            continue;
        };
        let revocation = Revocation {
            reason: RevocationReason::Compromised,
            note: Some(leak_note(leak).chars().take(500).collect()),
        };
        let RevokePlan::Revoke(transition) = lifecycle::revoke(key, revocation, now) else {
            // Already revoked: a replayed report changes nothing, and is not audited again.
            revoked.push(false);
            continue;
        };
        save_key(&mut mutation, &transition.key, now).await?;
        let mut note = transition.audit;
        note.details["leak"] = json!({"source": leak.source, "url": leak.url});
        mutation.audit(&store.sealer, note, context, now).await?;
        let event = NewEvent::new(
            org,
            EventType::KeyLeaked,
            json!({
                "organization_id": org,
                "key_id": leak.id,
                "source": leak.source,
                "url": leak.url,
                "revoked": true,
            }),
            now,
        )?;
        outbox::enqueue(mutation.connection(), &event, now).await?;
        revoked.push(true);
    }
    mutation.commit(&store.heads).await?;
    Ok(revoked)
}
