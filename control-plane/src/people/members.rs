//! `/v1/members`: list, change a role, remove (with what happens to the member's keys), and
//! move every key of one member to another. Owners and admins manage members; only an owner
//! (or an `admin:full` key) makes, changes or removes an owner; an organization always keeps
//! an owner.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::user_id;
use super::views::MemberView;
use crate::access::{Permission, RoleName};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::formats::RoleNameFormat;
use crate::state::AppState;
use crate::store::{KeysOnRemoval, StoreError};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(change_role))
        .routes(routes!(remove_member))
}

/// The organization's members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    /// Oldest first.
    pub data: Vec<MemberView>,
}

/// List the members.
#[utoipa::path(
    get, path = "/v1/members", tag = "members",
    responses((status = 200, description = "The members", body = MemberList)),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MemberList>, ApiError> {
    principal.require(Permission::Read)?;
    let members = state.store.members(principal.org).await?;
    Ok(Json(MemberList {
        data: members.iter().map(MemberView::from).collect(),
    }))
}

pub(crate) fn role(text: &str) -> Result<RoleName, ApiError> {
    RoleName::parse(text).map_err(|error| ApiError::InvalidRequest(format!("`role`: {error}")))
}

fn not_found_as_member(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound("member"),
        other => other.into(),
    }
}

/// Body of a role change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    /// The new role (built in or custom).
    #[schema(value_type = RoleNameFormat)]
    pub role: String,
}

/// Change a member's role. Their keys keep working; keys above the new role's ceiling are
/// marked `exceeds_owner_scopes` (see `POST /v1/keys/reconcile`).
#[utoipa::path(
    patch, path = "/v1/members/{user_id}", tag = "members",
    params(("user_id" = String, Path, description = "The member (`usr_…`)")),
    request_body = ChangeRole,
    responses(
        (status = 200, description = "The member", body = MemberView),
        (status = 403, description = "The caller may not give or take this role", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such member, or no such role", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The last owner cannot stop being one (`last_owner`), or the member's role changed while the call waited (`member_changed`: nothing was changed)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn change_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeRole>,
) -> Result<Json<MemberView>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let user = user_id(&id)?;
    let new = role(&body.role)?;
    let current = state
        .store
        .member(principal.org, user)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if !principal.access.may_manage_member_with(&current.role)
        || !principal.access.may_manage_member_with(&new)
    {
        return Err(ApiError::Forbidden(
            "only an owner makes or changes owners".into(),
        ));
    }
    let member = state
        .store
        .change_role(
            principal.org,
            user,
            &current.role,
            &new,
            &principal.context,
            state.now(),
        )
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound("role"),
            other => other.into(),
        })?;
    Ok(Json(MemberView::from(&member)))
}

/// What happens to a removed member's keys.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeysDecision {
    /// Revoke every one (reason `employee_departure`), at once at every edge.
    Revoke,
    /// Give every one to `transfer_to`.
    Transfer,
}

/// Body of a removal: the decision about the member's keys is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveMember {
    /// `revoke` or `transfer`.
    pub keys: KeysDecision,
    /// With `transfer`: the member who takes the keys (`usr_…`).
    pub transfer_to: Option<String>,
}

/// What a removal did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// Keys revoked.
    pub revoked: Vec<String>,
    /// Keys transferred.
    pub transferred: Vec<String>,
}

/// Remove a member, deciding what happens to their keys: revoke them all with reason
/// `employee_departure` (one audit record per key, replicated like any revoke), or transfer
/// them to another member. Their sessions in this organization end.
#[utoipa::path(
    post, path = "/v1/members/{user_id}/remove", tag = "members",
    params(("user_id" = String, Path, description = "The member (`usr_…`)")),
    request_body = RemoveMember,
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 403, description = "The caller may not remove this member", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such member", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The last owner (`last_owner`), `transfer_to` is not another member (`not_a_member`), or the member's role changed while the call waited (`member_changed`: nothing was changed)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RemoveMember>,
) -> Result<Json<Removed>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let user = user_id(&id)?;
    let keys = match (body.keys, body.transfer_to.as_deref()) {
        (KeysDecision::Revoke, None) => KeysOnRemoval::Revoke,
        (KeysDecision::Transfer, Some(to)) => KeysOnRemoval::TransferTo(
            to.parse()
                .map_err(|_| ApiError::InvalidRequest("`transfer_to` must be a user id".into()))?,
        ),
        (KeysDecision::Revoke, Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "`transfer_to` goes with `\"keys\": \"transfer\"` only".into(),
            ));
        }
        (KeysDecision::Transfer, None) => {
            return Err(ApiError::InvalidRequest(
                "`\"keys\": \"transfer\"` needs `transfer_to`".into(),
            ));
        }
    };
    let current = state
        .store
        .member(principal.org, user)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if !principal.access.may_manage_member_with(&current.role) {
        return Err(ApiError::Forbidden("only an owner removes an owner".into()));
    }
    let removal = state
        .store
        .remove_member(
            principal.org,
            user,
            &current.role,
            keys,
            &principal.context,
            state.now(),
        )
        .await
        .map_err(not_found_as_member)?;
    state
        .metrics
        .key_operation_n("revoke", removal.revoked.len() as u64);
    Ok(Json(Removed {
        revoked: removal.revoked.iter().map(ToString::to_string).collect(),
        transferred: removal
            .transferred
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}
