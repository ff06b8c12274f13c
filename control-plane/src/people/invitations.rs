//! Invitations: an owner or admin invites an email with a role; the one-time link, valid for
//! [`VALID_DAYS`] days, is emailed to the invitee when SMTP is configured ([`crate::mailer`]),
//! else (or when sending fails) shown once to the inviter to hand over. Accepting it makes the
//! account (or, for an email that has one, checks its password), adds the membership and signs
//! the person in. The first owner's setup link, printed at a first start and by
//! `keyplane users add`, is an invitation too.
//!
//! Until it is used, an invitation is *pending*: those who manage members list the pending
//! ones and revoke any they could have sent (a link mailed to the wrong address, someone who
//! left before joining); a revoked link answers 409 `invitation_revoked`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyplane_shared::ids::{InvitationId, OrgId, UserId};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::members::role;
use super::sessions::{check_password, start_session};
use crate::access::{Permission, RoleName};
use crate::accounts::{password, tokens};
use crate::auth::{Anonymous, Principal};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::hashing;
use crate::input::time::rfc3339;
use crate::openapi::formats::{EmailFormat, RoleNameFormat};
use crate::state::AppState;
use crate::store::{AuditContext, Joining, NewInvitation, SessionKind, StoreError};

use super::views::InvitationView;

/// Days an invitation link works.
pub const VALID_DAYS: i64 = 7;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept))
}

/// Body of an invitation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Whom.
    #[schema(value_type = EmailFormat)]
    pub email: String,
    /// With which role (built in, or one of the organization's own).
    #[schema(value_type = RoleNameFormat)]
    pub role: String,
}

/// A new invitation and its link, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invited {
    /// `inv_…`.
    pub id: String,
    /// For whom (none: the first owner's setup link).
    pub email: Option<String>,
    /// The role.
    pub role: String,
    /// When the link stops working.
    pub expires_at: String,
    /// The one-time link, when it was not emailed. Keyplane keeps only its digest: copy it now.
    pub link: Option<String>,
    /// Whether the link was emailed to the invitee.
    pub email_sent: bool,
    /// Why emailing failed, when it was tried and failed.
    pub email_error: Option<String>,
}

/// Makes an invitation into `org` and its link; with `deliver`, emails the link when a mailer
/// is configured (then the answer holds no link).
pub async fn create(
    state: &AppState,
    org: OrgId,
    email: Option<String>,
    role: RoleName,
    invited_by: Option<UserId>,
    context: &AuditContext,
    deliver: bool,
) -> Result<Invited, ApiError> {
    let token = tokens::generate().map_err(ApiError::internal)?;
    let now = state.now();
    let record = state
        .store
        .create_invitation(
            NewInvitation {
                id: InvitationId::generate().map_err(ApiError::internal)?,
                org,
                email,
                role,
                token_digest: tokens::digest(token.expose_secret()),
                invited_by,
                expires_at: now.plus_millis(VALID_DAYS * 86_400_000),
            },
            context,
            now,
        )
        .await?;
    // The token travels in the fragment, which browsers never send to a server.
    let link = format!(
        "{}/invitation#token={}",
        state.public_url,
        token.expose_secret()
    );
    let (email_sent, email_error) = match (&record.email, deliver && state.mailer.is_on()) {
        (Some(to), true) => {
            let org_name = state.store.org_name(org).await?.unwrap_or_default();
            match state
                .mailer
                .send_invitation(to, &org_name, record.role.as_str(), &link)
                .await
            {
                Ok(()) => (true, None),
                Err(error) => {
                    tracing::warn!(invitation = %record.id, %error, "the invitation email was not sent; the link is shown to the inviter");
                    (false, Some(error.to_string()))
                }
            }
        }
        _ => (false, None),
    };
    Ok(Invited {
        id: record.id.to_string(),
        email: record.email,
        role: record.role.as_str().to_owned(),
        expires_at: rfc3339(record.expires_at),
        link: (!email_sent).then_some(link),
        email_sent,
        email_error,
    })
}

/// Invite someone to the organization.
#[utoipa::path(
    post, path = "/v1/invitations", tag = "members",
    request_body = InviteRequest,
    responses(
        (status = 201, description = "Invited: the link is shown once", body = Invited),
        (status = 403, description = "The caller may not invite with this role", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such role", body = crate::openapi::ErrorResponse),
        (status = 409, description = "Already a member (`already_member`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn invite(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    principal.require(Permission::ManageMembers)?;
    let email = super::email(&body.email)?;
    let role = role(&body.role)?;
    if !principal.access.may_manage_member_with(&role) {
        return Err(ApiError::Forbidden("only an owner invites owners".into()));
    }
    state
        .store
        .role_ceiling(principal.org, &role)
        .await
        .map_err(super::roles::role_lookup_failed)?;
    let invited = create(
        &state,
        principal.org,
        Some(email),
        role,
        principal.user_id(),
        &principal.context,
        true,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invited)))
}

/// The organization's pending invitations.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    /// Oldest first.
    pub data: Vec<InvitationView>,
}

/// List the pending invitations: neither used, revoked nor expired.
#[utoipa::path(
    get, path = "/v1/invitations", tag = "members",
    responses(
        (status = 200, description = "The pending invitations", body = InvitationList),
        (status = 403, description = "Your role may not manage members", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_invitations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<InvitationList>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let pending = state
        .store
        .pending_invitations(principal.org, state.now())
        .await?;
    Ok(Json(InvitationList {
        data: pending.iter().map(InvitationView::from).collect(),
    }))
}

/// Revoke an invitation before it is used: its link stops working. Only an owner revokes an
/// invitation to become an owner, as only an owner sends one.
#[utoipa::path(
    delete, path = "/v1/invitations/{id}", tag = "members",
    params(("id" = String, Path, description = "Invitation id (`inv_…`)", pattern = "^inv_[0-9A-Za-z]{22}$")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Your role may not manage members, or not this invitation's role", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such invitation in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "Used already (`invitation_used`) or revoked already (`invitation_revoked`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn revoke_invitation(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let not_found = || ApiError::NotFound("invitation");
    let id: InvitationId = id.parse().map_err(|_| not_found())?;
    let invitation = state
        .store
        .invitation(principal.org, id)
        .await?
        .ok_or_else(not_found)?;
    if !principal.access.may_manage_member_with(&invitation.role) {
        return Err(ApiError::Forbidden(
            "only an owner revokes an invitation to become an owner".into(),
        ));
    }
    state
        .store
        .revoke_invitation(principal.org, id, &principal.context, state.now())
        .await
        .map_err(|error| match error {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of an acceptance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token from the link.
    pub token: String,
    /// The account's password: a new one for a new account, the existing one otherwise.
    pub password: String,
    /// The name to show (new accounts).
    pub display_name: Option<String>,
    /// The email (the first owner's setup link only: invitations name theirs).
    pub email: Option<String>,
}

/// Accept an invitation; answers like a sign-in (session cookie and CSRF token).
#[utoipa::path(
    post, path = "/v1/invitations/accept", tag = "members",
    request_body = AcceptRequest,
    responses(
        (status = 201, description = "Joined and signed in", body = super::sessions::SignedIn),
        (status = 400, description = "Weak password or missing name", body = crate::openapi::ErrorResponse),
        (status = 401, description = "The email has an account and the password is not its", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such invitation", body = crate::openapi::ErrorResponse),
        (status = 409, description = "Used (`invitation_used`), revoked (`invitation_revoked`), expired (`invitation_expired`), its role deleted since (`invitation_role_deleted`), or already a member", body = crate::openapi::ErrorResponse),
        (status = 429, description = "Too many password attempts for this email or address (`Retry-After`)", body = crate::openapi::ErrorResponse),
        (status = 503, description = "The database cannot be reached (`unavailable`); retry later", body = crate::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn accept(
    State(state): State<AppState>,
    anonymous: Anonymous,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> Result<Response, ApiError> {
    let password_text = SecretString::from(body.password);
    let invitation = state
        .store
        .invitation_by_token(&tokens::digest(body.token.trim()))
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    let email = match (&invitation.email, body.email.as_deref()) {
        (Some(email), _) => email.clone(),
        (None, Some(email)) => super::email(email)?,
        (None, None) => {
            return Err(ApiError::InvalidRequest(
                "`email`: the setup link needs one".into(),
            ));
        }
    };
    let joining = match state.store.user_by_email(&email).await? {
        Some(_) => {
            let user = check_password(
                &state,
                &email,
                password_text.expose_secret(),
                anonymous.context.ip.as_deref(),
            )
            .await?;
            Joining::Existing(user.id)
        }
        None => {
            let display_name = super::display_name(body.display_name.as_deref().unwrap_or(""))?;
            password::check(password_text.expose_secret(), Some(&email))
                .map_err(|weak| ApiError::WeakPassword(weak.to_string()))?;
            Joining::New {
                id: UserId::generate().map_err(ApiError::internal)?,
                email,
                display_name,
                password_hash: hashing::hash_password(password_text.expose_secret())
                    .await
                    .map_err(ApiError::internal)?,
            }
        }
    };
    let (user, org) = state
        .store
        .accept_invitation(invitation.id, joining, &anonymous.context, state.now())
        .await?;
    start_session(
        &state,
        &user,
        org,
        SessionKind::Dashboard,
        &anonymous,
        StatusCode::CREATED,
    )
    .await
}
