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

/// One registered edge and how replication to it is going, as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeView {
    /// Its name (`EDGE_NAME`).
    pub name: String,
    /// Where pushes go (`<url>/__keyplane/sync`).
    pub url: String,
    /// When it last pulled the feed (RFC 3339); `null` if never.
    pub last_seen_at: Option<String>,
    /// The sequence it reported when it last pulled.
    pub reported_seq: u64,
    /// The highest sequence it acknowledged to a push.
    pub acked_seq: u64,
    /// When a push to it was last attempted (RFC 3339); `null` if never.
    pub last_push_at: Option<String>,
    /// The last push's error, if it failed.
    pub last_error: Option<String>,
    /// The URL of a refused pull that named this edge from elsewhere, until it pulls from its
    /// own URL again or an operator moves it.
    pub conflict_url: Option<String>,
    /// When that pull came (RFC 3339).
    pub conflict_at: Option<String>,
}

impl From<EdgeRecord> for EdgeView {
    fn from(edge: EdgeRecord) -> Self {
        EdgeView {
            name: edge.name,
            url: edge.url,
            last_seen_at: edge.last_seen_at.map(rfc3339),
            reported_seq: edge.reported_seq,
            acked_seq: edge.acked_seq,
            last_push_at: edge.last_push_at.map(rfc3339),
            last_error: edge.last_error,
            conflict_url: edge.conflict_url,
            conflict_at: edge.conflict_at.map(rfc3339),
        }
    }
}

/// The registered edges.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeList {
    /// By name.
    pub data: Vec<EdgeView>,
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
    let edges = state.store.edges().await?;
    Ok(Json(EdgeList {
        data: edges.into_iter().map(EdgeView::from).collect(),
    }))
}
