//! Management keys: a Keyplane key (`x-api-key`, else `Authorization: Bearer`) that holds
//! `api-keys:manage` or `admin:full`; the call is then confined to that key's organization. The
//! key is found by its lookup digest (each pepper, current first), its Argon2id hash is checked
//! once per process and key, and its state is read from the database on every call, so a
//! revoked management key stops working at once.
//!
//! Every refusal of a key that was found goes to its organization's audit log, coalesced: the
//! first per key, reason and minute at once, the rest of that minute as one record with their
//! count (see [`crate::audit::refusals`]), so a flood of refused calls neither holds the
//! organization's lock nor buries the log. Refusals of keys that match nothing cannot be
//! attributed to an organization and are counted in `/metrics` instead (every refusal is
//! counted there). Unknown, malformed and wrong keys get the same 401.

use axum::http::request::Parts;
use keyplane_shared::decision::{RequestFacts, extract_key};
use keyplane_shared::{ApiKey, Scope};

use super::{Actor, Principal, header};
use crate::access::Access;
use crate::error::ApiError;
use crate::hashing;
use crate::refusal_log;
use crate::state::AppState;
use crate::store::{AuditContext, KeyRecord, KeyState, Reach};

/// Authenticates a management key: the caller is the key, in its organization, with its scopes.
pub(super) async fn authenticate(
    parts: &Parts,
    state: &AppState,
    mut context: AuditContext,
) -> Result<Principal, ApiError> {
    let headers = &parts.headers;
    let facts = RequestFacts {
        x_api_key: header(headers, "x-api-key"),
        authorization: header(headers, "authorization"),
        method: parts.method.as_str(),
        path: parts.uri.path(),
    };
    let Some(presented) = extract_key(&facts) else {
        state.metrics.auth_failed("missing_api_key");
        return Err(ApiError::MissingKey);
    };
    let Ok(key) = ApiKey::parse(presented, &state.prefix) else {
        state.metrics.auth_failed("invalid_api_key");
        return Err(ApiError::InvalidKey);
    };
    let mut found = None;
    for pepper in state.peppers.iter() {
        let digest = pepper.digest(&key);
        if let Some(record) = state.store.key_by_digest(&digest).await? {
            found = Some((record, digest));
            break;
        }
    }
    let Some((record, digest)) = found else {
        state.metrics.auth_failed("invalid_api_key");
        return Err(ApiError::InvalidKey);
    };
    context.actor = Some(record.id);
    let now = state.now();
    let refusal = if record.deleted_at.is_some() {
        Some(ApiError::InvalidKey)
    } else {
        match record.state(now) {
            KeyState::Revoked => Some(ApiError::RevokedKey),
            KeyState::Expired => Some(ApiError::ExpiredKey),
            KeyState::Active => None,
        }
    };
    if let Some(refusal) = refusal {
        return Err(refuse(state, &record, &context, refusal).await);
    }
    if !state.is_verified(record.id, &digest) {
        let matches = hashing::verify_key(&key, &record.secret_hash)
            .await
            .map_err(ApiError::internal)?;
        if !matches {
            // The digest matched but the at-rest hash did not: the row was tampered with.
            tracing::error!(key_id = %record.id, "lookup digest matched but Argon2id hash did not");
            return Err(refuse(state, &record, &context, ApiError::InvalidKey).await);
        }
        state.remember_verified(record.id, digest);
    }
    let manage = Scope::parse(crate::access::MANAGE_SCOPE).map_err(ApiError::internal)?;
    if !record.scopes.covers(&manage) {
        let refusal = ApiError::InsufficientScope(format!(
            "managing keys needs the `{}` or `admin:full` scope",
            crate::access::MANAGE_SCOPE
        ));
        return Err(refuse(state, &record, &context, refusal).await);
    }
    context.actor_user = record.owner_id;
    let operator = state.operator_org().await? == Some(record.org_id);
    let access = Access::of_management_key(&record.scopes, operator);
    context.reach = Reach {
        ceiling: access.ceiling.clone(),
        owner: None,
    };
    Ok(Principal {
        org: record.org_id,
        actor: Actor::Key(Box::new(record)),
        access,
        context,
    })
}

/// Notes a refusal of a known key for its organization's audit log (written now when it opens a
/// window, else counted into the window's record), then returns it.
async fn refuse(
    state: &AppState,
    record: &KeyRecord,
    context: &AuditContext,
    refusal: ApiError,
) -> ApiError {
    state.metrics.auth_failed(refusal.code());
    let pending = state.refusals.note(
        record.org_id,
        record.id,
        refusal.code(),
        context,
        state.now(),
    );
    // The caller gets the refusal whatever happens to the audit write (a failure is logged).
    refusal_log::write(state.store.as_ref(), &state.refusals, state.now(), pending).await;
    refusal
}
