//! `/v1/users/me` (who the caller is, what it may do, and, for a session, its CSRF token),
//! `POST /v1/users/me/password`, and `/v1/auth/config` (the ways of signing in this deployment
//! accepts; public).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sessions::check_password;
use crate::access::{CeilingView, Permission};
use crate::accounts::password;
use crate::auth::session::csrf_token_of;
use crate::auth::{Actor, Principal, Via};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::hashing;
use crate::host_token::IssuerSummary;
use crate::state::AppState;
use crate::store::UserSummary;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(auth_config))
}

/// One organization the user belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    /// `org_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The role there.
    pub role: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `management_key`, `session` or `host_token`.
    pub method: &'static str,
    /// The person (for a management key: its owner, if it has one).
    pub user: Option<UserSummary>,
    /// The management key, when the call used one.
    pub key_id: Option<String>,
    /// The organization of this call.
    pub organization_id: String,
    /// The role acted with (none for a management key).
    pub role: Option<String>,
    /// What the caller may do.
    pub permissions: Vec<&'static str>,
    /// The scopes the caller's keys may hold.
    pub ceiling: CeilingView,
    /// One of the deployment's operators.
    pub operator: bool,
    /// Every organization the user belongs to.
    pub memberships: Vec<MembershipView>,
    /// A session's CSRF token (send it as `x-csrf-token` on unsafe requests).
    pub csrf_token: Option<String>,
}

const PERMISSIONS: [(Permission, &str); 7] = [
    (Permission::Read, "read"),
    (Permission::CreateKeys, "create_keys"),
    (Permission::ManageOwnKeys, "manage_own_keys"),
    (Permission::ManageAllKeys, "manage_all_keys"),
    (Permission::ManageMembers, "manage_members"),
    (Permission::ManageOwners, "manage_owners"),
    (Permission::ManageRoles, "manage_roles"),
];

/// Who you are, where, and what you may do.
#[utoipa::path(
    get, path = "/v1/users/me", tag = "users",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Me>, ApiError> {
    let user = match &principal.actor {
        Actor::User { user, .. } => Some(user.clone()),
        Actor::Key(key) => match key.owner_id {
            Some(owner) => state
                .store
                .user_summaries(&[owner])
                .await?
                .into_iter()
                .next(),
            None => None,
        },
    };
    let memberships = match &user {
        Some(user) => state
            .store
            .memberships(user.id)
            .await?
            .into_iter()
            .map(|membership| MembershipView {
                id: membership.org_id.to_string(),
                name: membership.org_name,
                role: membership.role.as_str().to_owned(),
            })
            .collect(),
        None => Vec::new(),
    };
    let csrf_token = match &principal.actor {
        Actor::User {
            via: Via::Session(session),
            ..
        } => csrf_token_of(&headers, session.kind, &state),
        _ => None,
    };
    Ok(Json(Me {
        method: principal.method(),
        key_id: match &principal.actor {
            Actor::Key(key) => Some(key.id.to_string()),
            Actor::User { .. } => None,
        },
        user,
        organization_id: principal.org.to_string(),
        role: principal
            .access
            .role
            .as_ref()
            .map(|role| role.as_str().to_owned()),
        permissions: PERMISSIONS
            .iter()
            .filter(|(permission, _)| principal.access.may(*permission))
            .map(|(_, name)| *name)
            .collect(),
        ceiling: principal.access.ceiling.describe(),
        operator: principal.access.operator,
        memberships,
        csrf_token,
    }))
}

/// Body of a password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password now.
    pub current_password: String,
    /// The new one (at least 12 characters, not a common password).
    pub new_password: String,
}

/// Change your password; your other sessions end.
#[utoipa::path(
    post, path = "/v1/users/me/password", tag = "users",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The new password breaks a rule (`weak_password`)", body = crate::openapi::ErrorResponse),
        (status = 401, description = "The current password is wrong", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Not a signed-in local account (a key or a host product's token has no password), or a request without its page's `Origin` and CSRF token (`csrf_failed`)", body = crate::openapi::ErrorResponse),
        (status = 429, description = "Too many password attempts for this email or address (`Retry-After`)", body = crate::openapi::ErrorResponse),
    ),
    security(("session" = []))
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let Actor::User {
        user,
        via: Via::Session(session),
    } = &principal.actor
    else {
        return Err(ApiError::Forbidden(
            "only a signed-in local account has a password to change".into(),
        ));
    };
    let email = user.email.clone().unwrap_or_default();
    let current = SecretString::from(body.current_password);
    let new = SecretString::from(body.new_password);
    check_password(
        &state,
        &email,
        current.expose_secret(),
        principal.context.ip.as_deref(),
    )
    .await?;
    password::check(new.expose_secret(), Some(&email))
        .map_err(|weak| ApiError::WeakPassword(weak.to_string()))?;
    let hash = hashing::hash_password(new.expose_secret())
        .await
        .map_err(ApiError::internal)?;
    state
        .store
        .set_password(user.id, &hash, Some(session.id), state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How this deployment lets people and programs authenticate.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthConfig {
    /// Management keys (`x-api-key` or `Authorization: Bearer`): always.
    pub management_keys: bool,
    /// Email and password sign-in (`POST /v1/sessions`): always.
    pub local_accounts: bool,
    /// The host products whose tokens (`Authorization: Bearer <JWT>`) are accepted: issuer,
    /// audience, algorithm, pinned organization, provisioning.
    pub host_tokens: Vec<IssuerSummary>,
    /// The session cookie's rules.
    pub session: SessionRules,
}

/// The session cookie's rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionRules {
    /// Minutes without a request after which a session ends.
    pub idle_timeout_minutes: i64,
    /// Hours after which a session ends in any case.
    pub absolute_timeout_hours: i64,
    /// The header carrying the CSRF token on unsafe requests.
    pub csrf_header: &'static str,
}

/// Which ways of authenticating this deployment accepts (public: a sign-in page reads it).
#[utoipa::path(
    get, path = "/v1/auth/config", tag = "users",
    responses((status = 200, description = "The accepted methods", body = AuthConfig)),
)]
pub(crate) async fn auth_config(State(state): State<AppState>) -> Json<AuthConfig> {
    use crate::auth::session::{ABSOLUTE_HOURS, CSRF_HEADER, IDLE_MINUTES};
    Json(AuthConfig {
        management_keys: true,
        local_accounts: true,
        host_tokens: state.host_tokens.issuers(),
        session: SessionRules {
            idle_timeout_minutes: IDLE_MINUTES,
            absolute_timeout_hours: ABSOLUTE_HOURS,
            csrf_header: CSRF_HEADER,
        },
    })
}
