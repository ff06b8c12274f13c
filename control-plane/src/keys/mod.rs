//! The keys API under `/v1/keys`: create, list, get, update, rotate, revoke, delete.
//!
//! Every route needs an authenticated caller ([`Principal`]: a management key, a host
//! product's token or a session) and works only inside its organization: another
//! organization's key id answers 404, exactly like an id that does not exist. A caller can only
//! grant scopes its ceiling allows (a management key's own scopes, a member's role), and can
//! only change, rotate, revoke, delete or transfer keys within that ceiling (otherwise rotating
//! an admin key would hand a lesser caller an admin key); a developer (or a custom role)
//! changes only the keys they own. Viewers read.
//!
//! Every key has an owner: its maker, or the owner of the management key that made it.

pub mod input;
pub mod issue;
pub mod model;
pub mod owners;
pub mod people_routes;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_shared::ids::KeyId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::issue::{KeySettings, issue_key};
use self::model::*;
use self::owners::People;
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::state::AppState;
use crate::store::{
    KeyChanges, KeyFilter, Revocation, RevokeOutcome, Rotation, StoreError, SuccessorExpiry,
};

/// The keys routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .merge(people_routes::router())
}

/// Reads a key id from the path; a malformed id cannot name a key, so it is a 404 as well.
pub(crate) fn key_id(text: &str) -> Result<KeyId, ApiError> {
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
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    principal.require(Permission::CreateKeys)?;
    let now = state.now();
    let settings = KeySettings {
        name: input::name(&body.name)?,
        scopes: input::scopes(&body.scopes, &principal.access.ceiling)?,
        expires_at: input::expiry(body.expires.as_deref(), now)?,
        rate_limit: body
            .rate_limit
            .map(|limit| input::rate_limit(limit, state.policy.max_rate_limit))
            .transpose()?,
        metadata: input::metadata(body.metadata.unwrap_or_default())?,
    };
    let (key, new) = issue_key(
        &state,
        principal.org,
        body.environment.into(),
        principal.key_maker(),
        settings,
    )
    .await?;
    let record = state.store.create_key(new, &principal.context, now).await?;
    state.metrics.key_operation("create");
    let people = People::load(&state, principal.org, &[&record]).await?;
    let created = CreatedKey {
        key: key.expose_secret().to_owned(),
        record: KeyView::of(&record, now, &people),
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
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListKeysQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    let now = state.now();
    let owner = query
        .owner
        .as_deref()
        .map(|owner| input::owner(owner, principal.user_id()))
        .transpose()?;
    let filter = KeyFilter {
        state: query.status,
        environment: query.environment.map(Into::into),
        name_contains: query.name.map(input::name_filter).transpose()?.flatten(),
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
        owner: owner.and_then(input::OwnerFilter::user),
        after: query
            .cursor
            .as_deref()
            .map(input::parse_key_cursor)
            .transpose()?,
        limit: crate::input::page::LISTING.size(query.limit)?,
    };
    principal.require(Permission::Read)?;
    if owner == Some(input::OwnerFilter::Nobody) {
        return Ok(Json(KeyPage {
            data: Vec::new(),
            next_cursor: None,
        }));
    }
    let page = state.store.list_keys(principal.org, &filter, now).await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last())
        .flatten()
        .map(|last| input::key_cursor(last.created_at, last.id));
    let keys: Vec<&_> = page.items.iter().collect();
    let people = People::load(&state, principal.org, &keys).await?;
    let data = page
        .items
        .iter()
        .map(|key| KeyView::of(key, now, &people))
        .collect();
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
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(Permission::Read)?;
    let record = state.store.key(principal.org, key_id(&id)?).await?;
    let people = People::load(&state, principal.org, &[&record]).await?;
    Ok(Json(KeyView::of(&record, state.now(), &people)))
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
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(Permission::ManageOwnKeys)?;
    let id = key_id(&id)?;
    let now = state.now();
    let changes = KeyChanges {
        name: body.name.as_deref().map(input::name).transpose()?,
        scopes: body
            .scopes
            .as_deref()
            .map(|scopes| input::scopes(scopes, &principal.access.ceiling))
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
        .update_key(principal.org, id, changes, &principal.context, now)
        .await?;
    state.metrics.key_operation("update");
    let people = People::load(&state, principal.org, &[&record]).await?;
    Ok(Json(KeyView::of(&record, now, &people)))
}

/// Replace a key by a new one with the same settings (a rate limit above the operator's current
/// ceiling is lowered to it), living as long as the old one did unless `expires` says otherwise.
/// The old key stops at once, or at the end of the grace period (never later than its own
/// expiry).
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
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RotateKeyRequest>,
) -> Result<(StatusCode, Json<RotatedKey>), ApiError> {
    principal.require(Permission::ManageOwnKeys)?;
    let id = key_id(&id)?;
    let grace_millis = input::grace(body.grace_seconds)?;
    let now = state.now();
    let expiry = match body.expires.as_deref() {
        None => SuccessorExpiry::SameLifetime,
        given => SuccessorExpiry::At(input::expiry(given, now)?),
    };
    let org = principal.org;
    // Reachable and still changeable before the Argon2id hash is spent (the store checks again
    // under its lock); the successor's environment comes from here, the store copies the rest.
    let current =
        crate::store::lifecycle::reach(Some(state.store.key(org, id).await?), &principal.context)?;
    current
        .check_changeable(now)
        .map_err(StoreError::Conflict)?;
    let (key, successor) = issue_key(
        &state,
        org,
        current.environment,
        principal.key_maker(),
        KeySettings::copied_by_the_store(),
    )
    .await?;
    let rotation = Rotation {
        successor,
        expiry,
        grace_millis,
        max_rate_limit: state.policy.max_rate_limit,
    };
    let (previous, record) = state
        .store
        .rotate_key(org, id, rotation, &principal.context, now)
        .await?;
    state.metrics.key_operation("rotate");
    let people = People::load(&state, org, &[&record, &previous]).await?;
    let rotated = RotatedKey {
        key: key.expose_secret().to_owned(),
        record: KeyView::of(&record, now, &people),
        previous: KeyView::of(&previous, now, &people),
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
        (status = 403, description = "The caller's role may not change keys, the key is another member's (`not_key_owner`), or it holds a scope the caller does not (`insufficient_scope`)", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RevokeKeyRequest>,
) -> Result<Json<RevokedKey>, ApiError> {
    principal.require(Permission::ManageOwnKeys)?;
    let id = key_id(&id)?;
    let revocation = Revocation {
        reason: body.reason,
        note: input::note(body.note)?,
    };
    let now = state.now();
    let outcome = state
        .store
        .revoke_key(principal.org, id, revocation, &principal.context, now)
        .await?;
    let (already_revoked, record) = match outcome {
        RevokeOutcome::Revoked(record) => {
            state.metrics.key_operation("revoke");
            (false, record)
        }
        RevokeOutcome::AlreadyRevoked(record) => (true, record),
    };
    let people = People::load(&state, principal.org, &[&record]).await?;
    Ok(Json(RevokedKey {
        already_revoked,
        record: KeyView::of(&record, now, &people),
    }))
}

/// Remove a revoked or expired key from listings. Its audit trail stays.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The caller's role may not change keys, the key is another member's (`not_key_owner`), or it holds a scope the caller does not (`insufficient_scope`)", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The key is still active (`key_active`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageOwnKeys)?;
    let id = key_id(&id)?;
    state
        .store
        .delete_key(principal.org, id, &principal.context, state.now())
        .await?;
    state.metrics.key_operation("delete");
    Ok(StatusCode::NO_CONTENT)
}
