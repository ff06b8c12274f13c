//! The keys API under `/v1/keys`: create, list, get, update, rotate, revoke, delete.
//!
//! Every route needs a management key ([`Manager`]) and works only inside that key's
//! organization: another organization's key id answers 404, exactly like an id that does not
//! exist. A caller can only grant scopes it holds, and can only change, rotate, revoke or delete
//! keys whose scopes it holds (otherwise rotating an admin key would hand a lesser caller an
//! admin key).

pub mod input;
pub mod issue;
pub mod model;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyplane_shared::ids::KeyId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::issue::{KeySettings, issue_key};
use self::model::*;
use crate::auth::Manager;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::state::AppState;
use crate::store::{KeyChanges, KeyFilter, Revocation, RevokeOutcome, Rotation, StoreError};

/// The keys routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
}

/// Reads a key id from the path; a malformed id cannot name a key, so it is a 404 as well.
fn key_id(text: &str) -> Result<KeyId, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound("key"))
}

/// Create a key. The response holds the full key; it is never shown again.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 400, description = "Invalid input, or a rate limit above the operator's ceiling", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
        (status = 403, description = "A scope the caller does not hold", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn create_key(
    State(state): State<AppState>,
    manager: Manager,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let now = state.now();
    let settings = KeySettings {
        name: input::name(&body.name)?,
        scopes: input::scopes(&body.scopes, &manager.key.scopes)?,
        expires_at: input::expiry(body.expires.as_deref(), now)?,
        rate_limit: body
            .rate_limit
            .map(|limit| input::rate_limit(limit, state.policy.max_rate_limit))
            .transpose()?,
        metadata: input::metadata(body.metadata.unwrap_or_default())?,
    };
    let (key, new) = issue_key(
        &state,
        manager.key.org_id,
        body.environment.into(),
        Some(manager.key.id),
        settings,
    )
    .await?;
    let record = state.store.create_key(new, &manager.context, now).await?;
    state.metrics.key_operation("create");
    let created = CreatedKey {
        key: key.expose_secret().to_owned(),
        record: KeyView::of(&record, now),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// List the organization's keys, newest first. `never_used` and `last_used_before` find keys
/// nobody uses; `last_used_ip_not` (the expected addresses) and `last_used_ip` find keys used
/// from an unexpected address.
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    params(ListKeysQuery),
    responses(
        (status = 200, description = "A page of keys", body = KeyPage),
        (status = 400, description = "Invalid filter or cursor", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    manager: Manager,
    ApiQuery(query): ApiQuery<ListKeysQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    let now = state.now();
    let filter = KeyFilter {
        state: query.status,
        environment: query.environment.map(Into::into),
        name_contains: query.name.filter(|name| !name.is_empty()),
        never_used: query.never_used,
        last_used_before: query
            .last_used_before
            .as_deref()
            .map(|text| {
                crate::input::time::timestamp(text).map_err(|_| {
                    ApiError::InvalidRequest("`last_used_before` must be an RFC 3339 time".into())
                })
            })
            .transpose()?,
        last_used_ip: query
            .last_used_ip
            .as_deref()
            .map(crate::input::ip::ip)
            .transpose()?,
        last_used_ip_not: query
            .last_used_ip_not
            .as_deref()
            .map(crate::input::ip::ip_list)
            .transpose()?
            .unwrap_or_default(),
        after: query
            .cursor
            .as_deref()
            .map(input::parse_key_cursor)
            .transpose()?,
        limit: crate::input::page::LISTING.size(query.limit)?,
    };
    let page = state
        .store
        .list_keys(manager.key.org_id, &filter, now)
        .await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last())
        .flatten()
        .map(|last| input::key_cursor(last.created_at, last.id));
    let data = page.items.iter().map(|key| KeyView::of(key, now)).collect();
    Ok(Json(KeyPage { data, next_cursor }))
}

/// Get one key.
#[utoipa::path(
    get, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn get_key(
    State(state): State<AppState>,
    manager: Manager,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let record = state.store.key(manager.key.org_id, key_id(&id)?).await?;
    Ok(Json(KeyView::of(&record, state.now())))
}

/// Change a key's name, scopes, expiry, rate limit or metadata in place.
#[utoipa::path(
    patch, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, description = "The updated key", body = KeyView),
        (status = 400, description = "Invalid input, or a rate limit above the operator's ceiling", body = crate::openapi::ErrorResponse),
        (status = 403, description = "A scope the caller does not hold", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The key is revoked (`key_revoked`), expired (`key_expired`) or rotated (`key_rotated`): it cannot be edited back to life", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn update_key(
    State(state): State<AppState>,
    manager: Manager,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let id = key_id(&id)?;
    let now = state.now();
    let changes = KeyChanges {
        name: body.name.as_deref().map(input::name).transpose()?,
        scopes: body
            .scopes
            .as_deref()
            .map(|scopes| input::scopes(scopes, &manager.key.scopes))
            .transpose()?,
        expires_at: body
            .expires
            .as_deref()
            .map(|text| input::expiry(Some(text), now))
            .transpose()?,
        rate_limit: body
            .rate_limit
            .map(|limit| {
                limit
                    .map(|limit| input::rate_limit(limit, state.policy.max_rate_limit))
                    .transpose()
            })
            .transpose()?,
        metadata: body.metadata.map(input::metadata).transpose()?,
    };
    if changes.is_empty() {
        return Err(ApiError::InvalidRequest(
            "nothing to change: give at least one of name, scopes, expires, rate_limit, metadata"
                .into(),
        ));
    }
    let record = state
        .store
        .update_key(manager.key.org_id, id, changes, &manager.context, now)
        .await?;
    state.metrics.key_operation("update");
    Ok(Json(KeyView::of(&record, now)))
}

/// Replace a key by a new one with the same settings (a rate limit above the operator's current
/// ceiling is lowered to it). The old key stops at once, or at the end of the grace period
/// (never later than its own expiry).
#[utoipa::path(
    post, path = "/v1/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    request_body(content = RotateKeyRequest, description = "Optional"),
    responses(
        (status = 201, description = "The new key, shown once", body = RotatedKey),
        (status = 400, description = "Invalid grace period", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The key holds a scope the caller does not", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The key is revoked (`key_revoked`), expired (`key_expired`) or already rotated (`key_rotated`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn rotate_key(
    State(state): State<AppState>,
    manager: Manager,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateKeyRequest>,
) -> Result<(StatusCode, Json<RotatedKey>), ApiError> {
    let id = key_id(&id)?;
    let grace_millis = input::grace(body.grace_seconds)?;
    let now = state.now();
    let org = manager.key.org_id;
    // Reachable and still changeable before the Argon2id hash is spent (the store checks again
    // under its lock); the successor's environment comes from here, the store copies the rest.
    let current = state.store.key(org, id).await?;
    if !current.scopes.is_covered_by(&manager.key.scopes) {
        return Err(StoreError::OutOfReach.into());
    }
    current
        .check_changeable(now)
        .map_err(StoreError::Conflict)?;
    let (key, successor) = issue_key(
        &state,
        org,
        current.environment,
        Some(manager.key.id),
        KeySettings::copied_by_the_store(),
    )
    .await?;
    let rotation = Rotation {
        successor,
        grace_millis,
        max_rate_limit: state.policy.max_rate_limit,
    };
    let (previous, record) = state
        .store
        .rotate_key(org, id, rotation, &manager.context, now)
        .await?;
    state.metrics.key_operation("rotate");
    let rotated = RotatedKey {
        key: key.expose_secret().to_owned(),
        record: KeyView::of(&record, now),
        previous: KeyView::of(&previous, now),
    };
    Ok((StatusCode::CREATED, Json(rotated)))
}

/// Revoke a key, with a reason. Irreversible; revoking a revoked key changes nothing.
#[utoipa::path(
    post, path = "/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    request_body = RevokeKeyRequest,
    responses(
        (status = 200, description = "Revoked (or already revoked: see `already_revoked`)", body = RevokedKey),
        (status = 400, description = "Invalid reason or note", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn revoke_key(
    State(state): State<AppState>,
    manager: Manager,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeKeyRequest>,
) -> Result<Json<RevokedKey>, ApiError> {
    let id = key_id(&id)?;
    let revocation = Revocation {
        reason: body.reason,
        note: input::note(body.note)?,
    };
    let now = state.now();
    let outcome = state
        .store
        .revoke_key(manager.key.org_id, id, revocation, &manager.context, now)
        .await?;
    let (already_revoked, record) = match outcome {
        RevokeOutcome::Revoked(record) => {
            state.metrics.key_operation("revoke");
            (false, record)
        }
        RevokeOutcome::AlreadyRevoked(record) => (true, record),
    };
    Ok(Json(RevokedKey {
        already_revoked,
        record: KeyView::of(&record, now),
    }))
}

/// Remove a revoked or expired key from listings. Its audit trail stays.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The key is still active (`key_active`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
async fn delete_key(
    State(state): State<AppState>,
    manager: Manager,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = key_id(&id)?;
    state
        .store
        .delete_key(manager.key.org_id, id, &manager.context, state.now())
        .await?;
    state.metrics.key_operation("delete");
    Ok(StatusCode::NO_CONTENT)
}
