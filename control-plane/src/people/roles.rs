//! `/v1/roles`: the built-in roles and the organization's own. Owners (and `admin:full` keys)
//! create custom roles (a name and scopes: the ceiling of the keys their members make), change
//! a custom role's or the developer role's scopes, and delete custom roles nobody holds.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::members::role;
use super::views::RoleView;
use crate::access::{BuiltinRole, Permission, RoleName, ScopeCeiling};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::formats::{ChangeableRoleFormat, RoleNameFormat, ScopeFormat};
use crate::state::AppState;
use crate::store::{Conflict, StoreError};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(update_role, delete_role))
}

/// The organization's roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    /// Built-in roles first, then the organization's own by name.
    pub data: Vec<RoleView>,
}

/// List the roles.
#[utoipa::path(
    get, path = "/v1/roles", tag = "roles",
    responses((status = 200, description = "The roles", body = RoleList)),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_roles(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RoleList>, ApiError> {
    principal.require(Permission::Read)?;
    let roles = state.store.roles(principal.org).await?;
    Ok(Json(RoleList {
        data: roles.iter().map(RoleView::from).collect(),
    }))
}

/// Body of a new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Its name: 1 to 40 characters of a-z, 0-9, `-`, `_`, starting with a letter (a built-in
    /// role's name is taken).
    #[schema(value_type = RoleNameFormat)]
    pub name: String,
    /// Its scopes, in the keys' grammar (at most 64).
    #[schema(value_type = Vec<ScopeFormat>, max_items = 64)]
    pub scopes: Vec<String>,
}

/// Body of a role change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    /// The new scopes (at most 64).
    #[schema(value_type = Vec<ScopeFormat>, max_items = 64)]
    pub scopes: Vec<String>,
}

/// A role lookup's failure: a role the organization does not have is 404 `not_found`; anything
/// else (a database that is down: 503) is what it is, not a missing role.
pub(super) fn role_lookup_failed(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound("role"),
        other => other.into(),
    }
}

fn scopes(texts: &[String]) -> Result<keyplane_shared::ScopeSet, ApiError> {
    crate::keys::input::scopes(texts, &ScopeCeiling::Everything)
}

/// Create a custom role.
#[utoipa::path(
    post, path = "/v1/roles", tag = "roles",
    request_body = CreateRole,
    responses(
        (status = 201, description = "Created", body = RoleView),
        (status = 400, description = "Invalid name or scopes", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Only owners and `admin:full` keys manage roles", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The name is taken (`role_exists`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    principal.require(Permission::ManageRoles)?;
    let name = role(&body.name)?;
    let scopes = scopes(&body.scopes)?;
    let exists = matches!(name, RoleName::Builtin(_))
        || match state.store.role_ceiling(principal.org, &name).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(other) => return Err(other.into()),
        };
    if exists {
        return Err(StoreError::Conflict(Conflict::RoleExists).into());
    }
    let record = state
        .store
        .put_role(
            principal.org,
            &name,
            &scopes,
            &principal.context,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(RoleView::from(&record))))
}

/// Change a custom role's scopes, or the developer role's ceiling. Members' keys keep working;
/// those above the new ceiling are marked `exceeds_owner_scopes`.
#[utoipa::path(
    put, path = "/v1/roles/{name}", tag = "roles",
    params(("name" = ChangeableRoleFormat, Path, description = "The role: `developer` or a custom role")),
    request_body = UpdateRole,
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 400, description = "Owner, admin and viewer are fixed", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Only owners and `admin:full` keys manage roles", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such role", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn update_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateRole>,
) -> Result<Json<RoleView>, ApiError> {
    principal.require(Permission::ManageRoles)?;
    let name = RoleName::parse(&name).map_err(|_| ApiError::NotFound("role"))?;
    match &name {
        RoleName::Builtin(BuiltinRole::Developer) => {}
        RoleName::Builtin(_) => {
            return Err(ApiError::InvalidRequest(
                "owner, admin and viewer are fixed; only the developer role and custom roles have scopes to change".into(),
            ));
        }
        RoleName::Custom(_) => {
            state
                .store
                .role_ceiling(principal.org, &name)
                .await
                .map_err(role_lookup_failed)?;
        }
    }
    let scopes = scopes(&body.scopes)?;
    let record = state
        .store
        .put_role(
            principal.org,
            &name,
            &scopes,
            &principal.context,
            state.now(),
        )
        .await?;
    Ok(Json(RoleView::from(&record)))
}

/// Delete a custom role nobody holds.
#[utoipa::path(
    delete, path = "/v1/roles/{name}", tag = "roles",
    params(("name" = String, Path, description = "The role")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only owners and `admin:full` keys manage roles", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such custom role", body = crate::openapi::ErrorResponse),
        (status = 409, description = "Members hold it (`role_in_use`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageRoles)?;
    let name = match RoleName::parse(&name) {
        Ok(name @ RoleName::Custom(_)) => name,
        _ => return Err(ApiError::NotFound("role")),
    };
    state
        .store
        .delete_role(principal.org, &name, &principal.context, state.now())
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound("role"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
