//! The key routes about people: transferring a key to another member, and reconciling keys
//! with their owners' ceilings after a role shrank (narrow or revoke, in one call).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::key_id;
use super::model::{KeyPage, KeyView};
use super::owners::People;
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::store::{Conflict, Reconciliation, StoreError};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(transfer_key))
        .routes(routes!(reconcile_keys))
}

/// Body of a transfer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferKeyRequest {
    /// The member who will own the key (`usr_…`).
    pub owner: String,
}

/// Give a key to another member of the organization.
#[utoipa::path(
    post, path = "/v1/keys/{id}/transfer", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    request_body = TransferKeyRequest,
    responses(
        (status = 200, description = "The key, with its new owner", body = KeyView),
        (status = 403, description = "Not the caller's key to give, or above its ceiling", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The new owner is not a member (`not_a_member`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn transfer_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TransferKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(Permission::ManageOwnKeys)?;
    let id = key_id(&id)?;
    let owner = body
        .owner
        .parse()
        .map_err(|_| StoreError::Conflict(Conflict::NotAMember))?;
    let now = state.now();
    let record = state
        .store
        .transfer_key(principal.org, id, owner, &principal.context, now)
        .await?;
    let people = People::load(&state, principal.org, &[&record]).await?;
    Ok(Json(KeyView::of(&record, now, &people)))
}

/// What to do with keys above their owners' ceilings.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileAction {
    /// Cut their scopes down to what the owner's role allows.
    Narrow,
    /// Revoke them.
    Revoke,
}

/// Body of a reconciliation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// `narrow` or `revoke`.
    pub action: ReconcileAction,
    /// Only this member's keys (`usr_…`); default: every member's.
    pub owner: Option<String>,
}

/// Narrow or revoke every active key whose scopes exceed what its owner's role now allows
/// (the keys marked `exceeds_owner_scopes`). A role change never does this by itself: keys keep
/// working, marked, until this is called. A key still in a rotation's grace period cannot be
/// edited: narrowing ends its grace (revokes it) and narrows its successor.
#[utoipa::path(
    post, path = "/v1/keys/reconcile", tag = "keys",
    request_body = ReconcileRequest,
    responses(
        (status = 200, description = "The keys changed", body = KeyPage),
        (status = 403, description = "Only callers who manage every key may do this", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such member", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn reconcile_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ReconcileRequest>,
) -> Result<Json<KeyPage>, ApiError> {
    principal.require(Permission::ManageAllKeys)?;
    let owner = body
        .owner
        .as_deref()
        .map(|text| text.parse().map_err(|_| ApiError::NotFound("member")))
        .transpose()?;
    let action = match body.action {
        ReconcileAction::Narrow => Reconciliation::Narrow,
        ReconcileAction::Revoke => Reconciliation::Revoke,
    };
    let now = state.now();
    let changed = state
        .store
        .reconcile_keys(principal.org, owner, action, &principal.context, now)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound("member"),
            other => other.into(),
        })?;
    let keys: Vec<&_> = changed.iter().collect();
    let people = People::load(&state, principal.org, &keys).await?;
    let data = changed
        .iter()
        .map(|key| KeyView::of(key, now, &people))
        .collect();
    Ok(Json(KeyPage {
        data,
        next_cursor: None,
    }))
}
