//! One-time portal links: `POST /v1/portal/sessions` makes one, [`super::enter`] uses it.
//!
//! Who may ask:
//! - A host product's back end, with a token its issuer signed (`Authorization: Bearer <JWT>`,
//!   checked like any host token, but the organization claim may be left out). The issuer acts
//!   for any of its organizations: the body names one by the host product's own id (or a
//!   Keyplane `org_…` id), resolved, or provisioned, the way host tokens are. A token that does
//!   carry an organization claim (or whose issuer is pinned to one) asks for that one only. The
//!   body's user (the host's subject) is created on first sight and their membership set to
//!   the role asked for, audited, as a host token would.
//! - A management key, for its own organization only, and for an existing member (by `usr_…`
//!   id or email); a role given that differs from the member's changes it (which needs the
//!   right to manage members holding both roles).
//!
//! Either way the role may reach no further than the caller ([`super::reach`]): a token with a
//! role or permissions claim, or a management key, gives at most what it holds itself (a key
//! without `admin:full` gives no owner or admin portal). The portal session then acts with the
//! member's stored role, checked on every request like any session.
//!
//! The link is `{public_url}/portal/enter#token=<token>` (a fragment: the token never reaches
//! a server log or a `Referer`), valid [`LINK_MINUTES`] minutes and once; only the token's
//! SHA-256 digest is stored.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_shared::ScopeSet;
use keyplane_shared::ids::{OrgId, UserId};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::reach::may_give;
use super::urls;
use crate::access::{Access, BuiltinRole, Permission, RoleName, ScopeCeiling};
use crate::accounts::tokens;
use crate::auth::{Actor, Principal, audit_context, host};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::host_token::ServiceClaims;
use crate::input::time::rfc3339;
use crate::openapi::formats::{RoleNameFormat, WebUrlFormat};
use crate::state::AppState;
use crate::store::{AuditContext, HostUser, JudgedMember, NewPortalLink};

/// Minutes a portal link stays valid.
pub const LINK_MINUTES: i64 = 5;

/// The longest host-product user id accepted.
const MAX_SUBJECT_LEN: usize = 255;

/// The user a portal link is for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalUser {
    /// With a host product's token: the host product's id of the user (required). With a
    /// management key: a member's `usr_…` id (or give `email`).
    pub id: Option<String>,
    /// The user's email (kept up to date for a host product's user; with a management key, a
    /// member's email finds them).
    pub email: Option<String>,
    /// The user's display name (a host product's user; default: the id).
    pub name: Option<String>,
}

/// Body of `POST /v1/portal/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalLinkRequest {
    /// Who will use the link.
    pub user: PortalUser,
    /// The organization: the host product's own id of it (or an `org_…` id). Required with a
    /// token that names none; with a management key, absent or its own organization's id.
    pub organization: Option<String>,
    /// The role the portal session acts with: built in (`owner`, `admin`, `developer`,
    /// `viewer`) or one of the organization's own. Required with a host product's token; with
    /// a management key, default the member's current role.
    #[schema(value_type = Option<RoleNameFormat>)]
    pub role: Option<String>,
    /// Where "Back to …" leads: an `https://` URL (`http://` only in local development).
    #[schema(value_type = WebUrlFormat)]
    pub return_url: String,
}

/// A one-time portal link.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLink {
    /// `{public_url}/portal/enter#token=…`: open it once, within the validity.
    pub url: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Who asks for a portal link.
pub enum PortalCaller {
    /// A host product's back end.
    HostProduct {
        /// What its token says.
        claims: Box<ServiceClaims>,
        /// Where the call came from.
        context: AuditContext,
    },
    /// Anything else (only a management key is then accepted).
    Principal(Box<Principal>),
}

impl FromRequestParts<AppState> for PortalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = host::bearer_jwt(&parts.headers) {
            let now = state.now().as_millis().div_euclid(1000);
            let claims = state
                .host_tokens
                .verify_service(token, now)
                .await
                .map_err(|error| host::refused(state, error.code()))?;
            return Ok(PortalCaller::HostProduct {
                claims: Box::new(claims),
                context: audit_context(parts, state),
            });
        }
        let principal = Principal::from_request_parts(parts, state).await?;
        Ok(PortalCaller::Principal(Box::new(principal)))
    }
}

/// What a link is for, once the caller's request is checked.
struct Grant {
    org: OrgId,
    user: UserId,
    role: RoleName,
    context: AuditContext,
}

/// Ask for a one-time portal link for one of your users: the host product's back end (its
/// token) or a management key (its own organization). The link is valid 5 minutes, once, and
/// starts a portal session with the role given, no more than the caller's own.
#[utoipa::path(
    post, path = "/v1/portal/sessions", tag = "portal",
    request_body = PortalLinkRequest,
    responses(
        (status = 201, description = "A one-time link", body = PortalLink),
        (status = 400, description = "Invalid input (the message names the field)", body = crate::openapi::ErrorResponse),
        (status = 401, description = "The token or key was refused", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Another organization, a role beyond the caller's, or a caller that is neither a host product nor a management key", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such member (management key)", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The change would leave the organization without an owner (`last_owner`), or the member's role changed while the call waited (`member_changed`)", body = crate::openapi::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn create_link(
    State(state): State<AppState>,
    caller: PortalCaller,
    ApiJson(body): ApiJson<PortalLinkRequest>,
) -> Result<Response, ApiError> {
    let return_url = urls::web_url(&body.return_url, state.policy.local_dev, "return_url")
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    let grant = match caller {
        PortalCaller::HostProduct { claims, context } => {
            for_host_user(&state, &claims, &body, context).await?
        }
        PortalCaller::Principal(principal) => for_member(&state, &principal, &body).await?,
    };
    let now = state.now();
    let token = tokens::generate().map_err(ApiError::internal)?;
    let expires_at = now.plus_millis(LINK_MINUTES * 60_000);
    state
        .store
        .create_portal_link(
            NewPortalLink {
                token_digest: tokens::digest(token.expose_secret()),
                org: grant.org,
                user: grant.user,
                role: grant.role,
                return_url,
                expires_at,
            },
            &grant.context,
            now,
        )
        .await?;
    let link = PortalLink {
        url: format!(
            "{}/portal/enter#token={}",
            state.public_url,
            token.expose_secret()
        ),
        expires_at: rfc3339(expires_at),
    };
    let mut response = (StatusCode::CREATED, Json(link)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.to_owned())
}

fn role_of(text: Option<&str>) -> Result<Option<RoleName>, ApiError> {
    text.map(|text| RoleName::parse(text).map_err(|error| invalid(&format!("role: {error}"))))
        .transpose()
}

/// What `role` gives in `org` (400 for a role the organization does not have).
async fn access_of(state: &AppState, org: OrgId, role: &RoleName) -> Result<Access, ApiError> {
    match state.member_access(org, role.clone()).await {
        Err(ApiError::NotFound(_)) => Err(invalid(&format!(
            "role: the organization has no role `{role}`"
        ))),
        other => other,
    }
}

fn beyond_reach(role: &RoleName) -> ApiError {
    ApiError::Forbidden(format!(
        "a portal link with the `{role}` role reaches further than the caller may"
    ))
}

/// A link asked for by a host product's back end.
async fn for_host_user(
    state: &AppState,
    claims: &ServiceClaims,
    body: &PortalLinkRequest,
    context: AuditContext,
) -> Result<Grant, ApiError> {
    let subject = body
        .user
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("user.id (the host product's id of the user) is required"))?;
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(invalid("user.id is at most 255 bytes"));
    }

    // Stored as they are (and PostgreSQL text cannot hold a NUL): no control characters.
    let texts = [
        Some(subject),
        body.user.email.as_deref(),
        body.user.name.as_deref(),
        body.organization.as_deref(),
    ];
    if texts
        .into_iter()
        .flatten()
        .any(|text| text.chars().any(char::is_control))
    {
        return Err(invalid(
            "user.id, user.email, user.name and organization must not contain control characters",
        ));
    }
    let role = role_of(body.role.as_deref())?.ok_or_else(|| invalid("role is required"))?;
    let named = match (&claims.organization, &body.organization) {
        (Some(confined), None) => confined.clone(),
        (Some(confined), Some(asked)) if confined == asked => asked.clone(),
        (Some(_), Some(_)) => {
            return Err(ApiError::Forbidden(
                "this token is confined to another organization".into(),
            ));
        }
        (None, Some(asked)) if !asked.trim().is_empty() => asked.clone(),
        (None, _) => return Err(invalid("organization is required")),
    };
    let org = host::resolve_organization(
        state,
        &claims.issuer,
        &named,
        claims.pinned_organization,
        claims.provision_organizations,
        &context,
    )
    .await?;
    let given = access_of(state, org, &role).await?;
    let caller = token_access(state, claims, org).await?;
    if !may_give(&caller, &given) {
        return Err(beyond_reach(&role));
    }
    // Another person's link acts as them and sets their role: only a token that manages
    // members asks for one (a developer's or viewer's own token asks for its own link only).
    let for_someone_else = subject != claims.subject;
    if for_someone_else && !caller.may(Permission::ManageMembers) {
        return Err(ApiError::Forbidden(
            "this token may ask for its own portal link only (user.id must be its subject): \
             its role does not manage members"
                .into(),
        ));
    }
    let now = state.now();
    let user = state
        .store
        .host_user(
            HostUser {
                issuer: claims.issuer.clone(),
                subject: subject.to_owned(),
                display_name: body
                    .user
                    .name
                    .as_deref()
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .unwrap_or(subject)
                    .chars()
                    .take(200)
                    .collect(),
                email: body
                    .user
                    .email
                    .as_ref()
                    .map(|email| email.trim().to_lowercase())
                    .filter(|email| !email.is_empty()),
            },
            now,
        )
        .await?;
    // Nor does it change the role of a member it could not manage (an admin's token, an
    // owner's); the store sets it only if they still stand as judged here (`None`: the user's
    // own link, not judged: the token says what their role is).
    let judged_on = match for_someone_else {
        true => Some(
            state
                .store
                .member(org, user.id)
                .await?
                .map(|member| member.role),
        ),
        false => None,
    };
    if let Some(Some(held)) = &judged_on
        && !caller.may_manage_member_with(held)
    {
        return Err(beyond_reach(held));
    }
    let judged = judged_on.as_ref().map_or(JudgedMember::Unjudged, |held| {
        JudgedMember::As(held.as_ref())
    });
    // Unlike a user's own token, a conflict (the last owner asked to become something else)
    // is refused: the session must not act with more than the role asked for.
    state
        .store
        .sync_member(org, user.id, &role, judged, &context, now)
        .await?;
    Ok(Grant {
        org,
        user: user.id,
        role,
        context,
    })
}

/// What the host product's token itself may reach in `org`: its role claim, or its
/// permissions claim as a developer's ceiling; a token with neither stands for the issuer's
/// back end, trusted with its organizations like an owner.
async fn token_access(
    state: &AppState,
    claims: &ServiceClaims,
    org: OrgId,
) -> Result<Access, ApiError> {
    match (&claims.role, &claims.permissions) {
        (Some(role), _) => {
            let role = RoleName::parse(role).map_err(|_| host::refused(state, "unknown_role"))?;
            match state.member_access(org, role).await {
                Err(ApiError::NotFound(_)) => Err(host::refused(state, "unknown_role")),
                other => other,
            }
        }
        (None, Some(permissions)) => {
            let scopes = ScopeSet::parse(permissions)
                .map_err(|_| host::refused(state, "invalid_permissions"))?;
            Ok(Access::of_member(
                RoleName::Builtin(BuiltinRole::Developer),
                ScopeCeiling::Only(scopes),
                false,
            ))
        }
        (None, None) => Ok(Access::of_member(
            RoleName::Builtin(BuiltinRole::Owner),
            ScopeCeiling::Everything,
            false,
        )),
    }
}

/// A link asked for with a management key, for one of its organization's members.
async fn for_member(
    state: &AppState,
    principal: &Principal,
    body: &PortalLinkRequest,
) -> Result<Grant, ApiError> {
    if !matches!(principal.actor, Actor::Key(_)) {
        return Err(ApiError::Forbidden(
            "portal links are asked for by a host product's back end (its token) or with a \
             management key"
                .into(),
        ));
    }
    let org = principal.org;
    if let Some(asked) = &body.organization
        && *asked != org.to_string()
    {
        return Err(ApiError::Forbidden(
            "a management key asks for portal links in its own organization only".into(),
        ));
    }
    let user = match (&body.user.id, &body.user.email) {
        (Some(id), _) => id.trim().parse::<UserId>().map_err(|_| {
            invalid("user.id: with a management key, a member's `usr_…` id (or give user.email)")
        })?,
        (None, Some(email)) => state
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?
            .map(|user| user.id)
            .ok_or(ApiError::NotFound("member"))?,
        (None, None) => return Err(invalid("user: give the member's id or email")),
    };
    let member = state
        .store
        .member(org, user)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let role = role_of(body.role.as_deref())?.unwrap_or_else(|| member.role.clone());
    let given = access_of(state, org, &role).await?;
    if !may_give(&principal.access, &given) {
        return Err(beyond_reach(&role));
    }
    if role != member.role {
        if !(principal.access.may_manage_member_with(&member.role)
            && principal.access.may_manage_member_with(&role))
        {
            return Err(ApiError::Forbidden(format!(
                "the member's role is `{}`; changing it to `{role}` needs the right to manage \
                 members",
                member.role
            )));
        }
        state
            .store
            .change_role(
                org,
                user,
                &member.role,
                &role,
                &principal.context,
                state.now(),
            )
            .await?;
    }
    Ok(Grant {
        org,
        user,
        role,
        context: principal.context.clone(),
    })
}
