//! The operators' view of the deployment: every organization and every edge. Operators are the
//! owners of the organization created at first start (and `admin:full` keys of it); everyone
//! else gets 403.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::time::rfc3339;
use crate::state::AppState;
use crate::store::EdgeRecord;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(organizations))
        .routes(routes!(edges))
}

fn require_operator(principal: &Principal) -> Result<(), ApiError> {
    if principal.access.operator {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the deployment's operators (owners of the first organization) see this".into(),
        ))
    }
}

/// One organization, as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    /// `org_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
    /// How many members it has.
    pub members: u64,
}

/// Every organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationList {
    /// Oldest first.
    pub data: Vec<OrganizationView>,
}

/// Every organization of the deployment (operators only).
#[utoipa::path(
    get, path = "/v1/operator/organizations", tag = "operator",
    responses(
        (status = 200, description = "The organizations", body = OrganizationList),
        (status = 403, description = "Not an operator", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn organizations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<OrganizationList>, ApiError> {
    require_operator(&principal)?;
    let data = state
        .store
        .organizations()
        .await?
        .into_iter()
        .map(|(org, members)| OrganizationView {
            id: org.id.to_string(),
            name: org.name,
            created_at: rfc3339(org.created_at),
            members,
        })
        .collect();
    Ok(Json(OrganizationList { data }))
}

/// The registered edges.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeList {
    /// By name.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<EdgeRecord>,
}

/// The registered edges and how replication to each is going (operators only).
#[utoipa::path(
    get, path = "/v1/operator/edges", tag = "operator",
    responses(
        (status = 200, description = "The edges", body = EdgeList),
        (status = 403, description = "Not an operator", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn edges(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<EdgeList>, ApiError> {
    require_operator(&principal)?;
    Ok(Json(EdgeList {
        data: state.store.edges().await?,
    }))
}
