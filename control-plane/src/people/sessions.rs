//! Signing in and out: `POST /v1/sessions` (email and password; a new session id every time,
//! so a session id planted before sign-in is worthless), the caller's sessions, sign-out of
//! one, of the current one, and of every one.
//!
//! Sign-in never tells whether an email has an account: an unknown email costs the same
//! Argon2id verification (against a fixed hash) and gets the same 401 as a wrong password, and
//! both are throttled alike (see [`crate::accounts::throttle`]).

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_shared::ids::{OrgId, SessionId};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::SessionView;
use crate::accounts::tokens;
use crate::auth::session::{self, ABSOLUTE_HOURS, IDLE_MINUTES};
use crate::auth::{Actor, Anonymous, Principal, Via};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::hashing;
use crate::state::AppState;
use crate::store::{MemberRecord, NewSession, SessionKind, SessionRecord, UserRecord, UserSummary};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in, list_sessions, sign_out_everywhere))
        .routes(routes!(sign_out))
        .routes(routes!(end_session))
        .routes(routes!(portal_session))
}

/// Body of a sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
    /// The organization to act in (`org_…`); default: the first one joined.
    pub organization: Option<String>,
}

/// The organization a session acts in.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOrganization {
    /// `org_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The user's role there.
    pub role: String,
}

/// The answer to a sign-in (the cookie is in `Set-Cookie`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    /// The session.
    pub session: SessionView,
    /// Send this as `x-csrf-token` with every unsafe request of this session.
    pub csrf_token: String,
    /// Who.
    pub user: UserSummary,
    /// Where.
    pub organization: SessionOrganization,
    /// Minutes without a request after which the session ends.
    pub idle_timeout_minutes: i64,
}

/// A PHC string checked when the email has no account, so both answers cost one Argon2id.
pub(crate) async fn stand_in_hash() -> Result<&'static str, ApiError> {
    static HASH: OnceCell<String> = OnceCell::const_new();
    HASH.get_or_try_init(|| hashing::hash_password("keyplane stand-in password"))
        .await
        .map(String::as_str)
        .map_err(ApiError::internal)
}

/// Checks an email and password; the user when they match. Throttled per email and address.
pub(crate) async fn check_password(
    state: &AppState,
    email: &str,
    password: &str,
    address: Option<&str>,
) -> Result<UserRecord, ApiError> {
    state
        .throttle
        .attempt(email, address, state.now())
        .map_err(ApiError::TooManyAttempts)?;
    let user = state.store.user_by_email(email).await?;
    let stored = match user.as_ref().and_then(|user| user.password_hash.as_deref()) {
        Some(hash) => hash,
        None => stand_in_hash().await?,
    };
    let matches = hashing::verify_password(password, stored)
        .await
        .map_err(ApiError::internal)?;
    match user {
        Some(user) if matches && user.password_hash.is_some() => Ok(user),
        _ => {
            state.metrics.auth_failed("invalid_credentials");
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// A session just started.
pub(crate) struct OpenedSession {
    /// Its record.
    pub record: SessionRecord,
    /// The `Set-Cookie` value that carries it.
    pub set_cookie: HeaderValue,
    /// Its CSRF token.
    pub csrf_token: String,
    /// The user's membership of the session's organization.
    pub member: MemberRecord,
}

/// Starts a session for `user` in `org` (ending the one of the same kind the request came
/// with, if any: a portal entry leaves the browser's dashboard session alone, and the other
/// way round): its cookie and CSRF token. A portal session remembers `return_url`.
pub(crate) async fn open_session(
    state: &AppState,
    user: &UserRecord,
    org: OrgId,
    kind: SessionKind,
    anonymous: &Anonymous,
    return_url: Option<String>,
) -> Result<OpenedSession, ApiError> {
    let now = state.now();
    // The session of this kind that came with the request is ended: sign-in starts afresh.
    if let Some(presented) = session::presented_of(&anonymous.headers, kind) {
        let digest = tokens::digest(presented.token.expose_secret());
        if let Some((old, _)) = state.store.session_by_token(&digest).await? {
            state.store.end_session(old.user_id, old.id, now).await?;
        }
    }
    let member = state
        .store
        .member(org, user.id)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    let token = tokens::generate().map_err(ApiError::internal)?;
    let record = state
        .store
        .create_session(
            NewSession {
                id: SessionId::generate().map_err(ApiError::internal)?,
                token_digest: tokens::digest(token.expose_secret()),
                user: user.id,
                org,
                kind,
                expires_at: now.plus_millis(ABSOLUTE_HOURS * 3_600_000),
                ip: anonymous.context.ip.clone(),
                user_agent: anonymous.context.user_agent.clone(),
                return_url,
            },
            now,
        )
        .await?;
    let set_cookie = session::set_cookie(kind, &token)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("cookie header")))?;
    Ok(OpenedSession {
        record,
        set_cookie,
        csrf_token: state.csrf.token_for(&token),
        member,
    })
}

/// Starts a session for `user` in `org` and answers with its cookie.
pub(crate) async fn start_session(
    state: &AppState,
    user: &UserRecord,
    org: OrgId,
    kind: SessionKind,
    anonymous: &Anonymous,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let opened = open_session(state, user, org, kind, anonymous, None).await?;
    let org_name = state.store.org_name(org).await?.unwrap_or_default();
    let body = SignedIn {
        session: SessionView::of(&opened.record, true),
        csrf_token: opened.csrf_token,
        user: UserSummary {
            id: user.id,
            display_name: user.display_name.clone(),
            email: user.email.clone(),
        },
        organization: SessionOrganization {
            id: org.to_string(),
            name: org_name,
            role: opened.member.role.as_str().to_owned(),
        },
        idle_timeout_minutes: IDLE_MINUTES,
    };
    with_cookie(status, Json(body), Some(opened.set_cookie))
}

fn with_cookie(
    status: StatusCode,
    body: impl IntoResponse,
    cookie: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    let cookie = cookie.ok_or_else(|| ApiError::internal(anyhow::anyhow!("cookie header")))?;
    let mut response = (status, body).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Sign in with an email and password. Sets the session cookie (`__Host-keyplane_session`,
/// `HttpOnly; Secure; SameSite=Strict`) and answers with the CSRF token.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = SignInRequest,
    responses(
        (status = 201, description = "Signed in", body = SignedIn),
        (status = 401, description = "Wrong email or password (`invalid_credentials`), one answer for both", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The account belongs to no organization", body = crate::openapi::ErrorResponse),
        (status = 404, description = "Not a member of the organization asked for", body = crate::openapi::ErrorResponse),
        (status = 429, description = "Too many attempts for this email or address (`Retry-After`)", body = crate::openapi::ErrorResponse),
        (status = 503, description = "The database cannot be reached (`unavailable`); retry later", body = crate::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    anonymous: Anonymous,
    ApiJson(body): ApiJson<SignInRequest>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    let password = SecretString::from(body.password);
    let user = check_password(
        &state,
        &email,
        password.expose_secret(),
        anonymous.context.ip.as_deref(),
    )
    .await?;
    let memberships = state.store.memberships(user.id).await?;
    let org = match body.organization {
        Some(text) => memberships
            .iter()
            .find(|membership| membership.org_id.to_string() == text)
            .map(|membership| membership.org_id)
            .ok_or(ApiError::NotFound("organization"))?,
        None => memberships
            .first()
            .map(|membership| membership.org_id)
            .ok_or_else(|| ApiError::Forbidden("this account belongs to no organization".into()))?,
    };
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

fn session_user(principal: &Principal) -> Result<(&UserSummary, Option<&SessionRecord>), ApiError> {
    match &principal.actor {
        Actor::User {
            user,
            via: Via::Session(session),
        } => Ok((user, Some(session))),
        Actor::User { user, .. } => Ok((user, None)),
        Actor::Key(_) => Err(ApiError::Forbidden(
            "sessions belong to people: sign in, or use a host product's token".into(),
        )),
    }
}

/// The caller's sessions that have not ended, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The sessions.
    pub data: Vec<SessionView>,
}

/// List your sessions.
#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions",
    responses(
        (status = 200, description = "Your sessions", body = SessionList),
        (status = 403, description = "Not a person's credential: a key has no sessions", body = crate::openapi::ErrorResponse),
    ),
    security(("session" = []), ("bearer" = []))
)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<SessionList>, ApiError> {
    let (user, current) = session_user(&principal)?;
    let now = state.now();
    let data = state
        .store
        .sessions_of(user.id)
        .await?
        .iter()
        .filter(|session| now < session.expires_at)
        .map(|session| SessionView::of(session, current.is_some_and(|c| c.id == session.id)))
        .collect();
    Ok(Json(SessionList { data }))
}

/// Sign out everywhere: every session of yours ends, this one included.
#[utoipa::path(
    delete, path = "/v1/sessions", tag = "sessions",
    responses(
        (status = 204, description = "Every session ended"),
        (status = 403, description = "Not a person's credential: a key has no sessions", body = crate::openapi::ErrorResponse),
    ),
    security(("session" = []), ("bearer" = []))
)]
pub(crate) async fn sign_out_everywhere(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let (user, current) = session_user(&principal)?;
    state.store.end_sessions(user.id, None, state.now()).await?;
    let kind = current.map_or(SessionKind::Dashboard, |session| session.kind);
    with_cookie(StatusCode::NO_CONTENT, (), session::clear_cookie(kind))
}

/// Sign out: this session ends at once.
#[utoipa::path(
    delete, path = "/v1/sessions/current", tag = "sessions",
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Not a person's credential: a key has no sessions", body = crate::openapi::ErrorResponse),
        (status = 404, description = "Not signed in with a session", body = crate::openapi::ErrorResponse),
    ),
    security(("session" = []))
)]
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let (user, current) = session_user(&principal)?;
    let current = current.ok_or(ApiError::NotFound("session"))?;
    state
        .store
        .end_session(user.id, current.id, state.now())
        .await?;
    with_cookie(
        StatusCode::NO_CONTENT,
        (),
        session::clear_cookie(current.kind),
    )
}

/// End one of your sessions (another browser, say).
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "Not a person's credential: a key has no sessions", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such session of yours", body = crate::openapi::ErrorResponse),
    ),
    security(("session" = []), ("bearer" = []))
)]
pub(crate) async fn end_session(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (user, _) = session_user(&principal)?;
    let id: SessionId = id.parse().map_err(|_| ApiError::NotFound("session"))?;
    if state.store.end_session(user.id, id, state.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("session"))
    }
}

/// Exchange a host product's token for a portal session: the cookie a page of the host product
/// embedding Keyplane's portal in a frame uses (`__Host-keyplane_portal`,
/// `SameSite=None; Secure; Partitioned`: a cross-site frame gets no Strict cookie), with its CSRF
/// token. The session acts with the member's role as the token set it, so a token whose own
/// access differs from that role (a permissions claim; a role the last owner could not be given)
/// is refused: the session would act with more than the token.
#[utoipa::path(
    post, path = "/v1/sessions/portal", tag = "sessions",
    responses(
        (status = 201, description = "A portal session", body = SignedIn),
        (status = 401, description = "The token was refused (`invalid_token`)", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Only a host product's token can be exchanged, and only one whose access is its member's role", body = crate::openapi::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn portal_session(
    State(state): State<AppState>,
    principal: Principal,
    anonymous: Anonymous,
) -> Result<Response, ApiError> {
    let Actor::User {
        user,
        via: Via::HostToken { .. },
    } = &principal.actor
    else {
        return Err(ApiError::Forbidden(
            "a portal session is made from a host product's token".into(),
        ));
    };
    // The session will act with the member's stored role: refused unless that is exactly what
    // the token itself may do (a permissions claim narrower than the role, or an owner the
    // token could not demote, would be widened by the exchange).
    let member = state
        .store
        .member(principal.org, user.id)
        .await?
        .ok_or(ApiError::Forbidden("not a member".into()))?;
    if state.member_access(principal.org, member.role).await? != principal.access {
        return Err(ApiError::Forbidden(
            "this token's access differs from its member's role (a permissions claim, or a role \
             the member could not be given): use the token itself, not a session"
                .into(),
        ));
    }
    let user = state.store.user(user.id).await?;
    start_session(
        &state,
        &user,
        principal.org,
        SessionKind::Portal,
        &anonymous,
        StatusCode::CREATED,
    )
    .await
}
