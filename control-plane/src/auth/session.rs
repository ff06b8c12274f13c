//! Sessions: the cookie a signed-in person's browser sends, and the rules it must meet.
//!
//! - The cookie holds a random token; the database holds its SHA-256 digest only.
//! - `__Host-` prefixed (so it is `Secure`, host-only, `Path=/`), `HttpOnly`, `Secure` always
//!   (browsers accept Secure cookies on 127.0.0.1 and localhost). The dashboard's cookie is
//!   `SameSite=Strict`; the portal's (framed in a host product's page, a cross-site context)
//!   is `SameSite=None; Secure; Partitioned` and relies on the CSRF token.
//! - A session ends after [`IDLE_MINUTES`] without a request, after [`ABSOLUTE_HOURS`] in
//!   any case, at sign-out, at "sign out everywhere", at a password change (the other
//!   sessions), and when its user leaves the organization.
//! - Unsafe methods (anything but GET, HEAD, OPTIONS) also need an `Origin` header naming this
//!   host and the `x-csrf-token` header with the session's CSRF token.
//! - Sessions are for the management API only: the edge accepts API keys and nothing else.

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use cookie::{Cookie, SameSite};
use secrecy::SecretString;

use super::{Actor, Principal, Via, header, reach_of};
use crate::accounts::tokens;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AuditContext, SessionKind, UserSummary};

/// The dashboard's session cookie.
pub const DASHBOARD_COOKIE: &str = "__Host-keyplane_session";
/// The embedded portal's session cookie.
pub const PORTAL_COOKIE: &str = "__Host-keyplane_portal";
/// The header carrying the CSRF token on unsafe methods.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Minutes without a request after which a session ends.
pub const IDLE_MINUTES: i64 = 30;
/// Hours after sign-in after which a session ends whatever happens.
pub const ABSOLUTE_HOURS: i64 = 12;
/// A session's last-seen time is written at most this often (a request in between changes
/// nothing the idle rule could see).
const TOUCH_EVERY_MILLIS: i64 = 60_000;

/// A session cookie found on a request.
#[derive(Debug)]
pub struct PresentedCookie {
    /// Which cookie.
    pub kind: SessionKind,
    /// Its token.
    pub token: SecretString,
}

/// The session cookie of a request, if it carries one. A browser holding both (Keyplane and
/// the host product on one site) sends both everywhere: a request made in a frame
/// (`Sec-Fetch-Dest: iframe`) is the portal's, since the dashboard is never framed, and any
/// other is the dashboard's; each falls back to the other cookie when it lacks its own.
pub fn presented(headers: &HeaderMap) -> Option<PresentedCookie> {
    let first = if header(headers, "sec-fetch-dest") == Some("iframe") {
        SessionKind::Portal
    } else {
        SessionKind::Dashboard
    };
    presented_of(headers, first).or_else(|| presented_besides(headers, first))
}

/// The request's session cookie of the kind other than `chosen`, if it carries both: tried
/// when the chosen one's session is over, so a stale cookie does not hide a live session.
pub fn presented_besides(headers: &HeaderMap, chosen: SessionKind) -> Option<PresentedCookie> {
    let other = match chosen {
        SessionKind::Dashboard => SessionKind::Portal,
        SessionKind::Portal => SessionKind::Dashboard,
    };
    presented_of(headers, other)
}

/// The name of the cookie of `kind`.
fn cookie_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Dashboard => DASHBOARD_COOKIE,
        SessionKind::Portal => PORTAL_COOKIE,
    }
}

/// The request's session cookie of `kind`, if it carries one.
pub fn presented_of(headers: &HeaderMap, kind: SessionKind) -> Option<PresentedCookie> {
    let name = cookie_name(kind);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| Cookie::split_parse(text).flatten())
        .find(|cookie| cookie.name() == name)
        .map(|cookie| PresentedCookie {
            kind,
            token: SecretString::from(cookie.value().to_owned()),
        })
}

/// The `Set-Cookie` value that starts a session of `kind` with `token`.
pub fn set_cookie(kind: SessionKind, token: &SecretString) -> Option<HeaderValue> {
    use secrecy::ExposeSecret as _;
    let cookie = build(kind, token.expose_secret().to_owned());
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// The `Set-Cookie` value that removes the cookie of `kind`.
pub fn clear_cookie(kind: SessionKind) -> Option<HeaderValue> {
    let mut cookie = build(kind, String::new());
    cookie.make_removal();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

fn build(kind: SessionKind, value: String) -> Cookie<'static> {
    let same_site = match kind {
        SessionKind::Dashboard => SameSite::Strict,
        SessionKind::Portal => SameSite::None,
    };
    Cookie::build((cookie_name(kind), value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(same_site)
        .partitioned(kind == SessionKind::Portal)
        .build()
}

/// Whether the request's `Origin` names the host it was sent to (its `Host` header, or the
/// URI's authority for HTTP/2), or the deployment's public URL (behind a proxy that rewrites
/// `Host`).
fn same_origin(parts: &Parts, public_url: &str) -> bool {
    same_origin_of(&parts.headers, &parts.uri, public_url)
}

/// `same_origin` from a request's headers and URI (the dashboard's forms without a session:
/// sign-in and invitations, against login CSRF).
pub fn same_origin_of(headers: &HeaderMap, uri: &axum::http::Uri, public_url: &str) -> bool {
    let Some(origin) = header(headers, ORIGIN.as_str()) else {
        return false;
    };
    if origin.eq_ignore_ascii_case(public_url) {
        return true;
    }
    let host = header(headers, HOST.as_str())
        .or_else(|| uri.authority().map(|authority| authority.as_str()));
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((authority, host), (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticates a session cookie. An `InvalidSession` is counted by the caller, which may
/// still sign the request in with the browser's other cookie.
pub(super) async fn authenticate(
    parts: &Parts,
    cookie: PresentedCookie,
    state: &AppState,
    mut context: AuditContext,
) -> Result<Principal, ApiError> {
    use secrecy::ExposeSecret as _;
    let now = state.now();
    let digest = tokens::digest(cookie.token.expose_secret());
    let Some((session, user)) = state.store.session_by_token(&digest).await? else {
        return Err(ApiError::InvalidSession);
    };
    let idle_deadline = session.last_seen_at.plus_millis(IDLE_MINUTES * 60_000);
    if session.kind != cookie.kind
        || session.ended_at.is_some()
        || now >= session.expires_at
        || now >= idle_deadline
    {
        return Err(ApiError::InvalidSession);
    }
    if !is_safe(&parts.method) {
        let csrf_ok = header(&parts.headers, CSRF_HEADER)
            .is_some_and(|presented| state.csrf.verify(&cookie.token, presented));
        if !same_origin(parts, &state.public_url) || !csrf_ok {
            state.metrics.auth_failed("csrf_failed");
            return Err(ApiError::CsrfFailed);
        }
    }
    let Some(member) = state.store.member(session.org_id, user.id).await? else {
        return Err(ApiError::InvalidSession);
    };
    if now.as_millis() - session.last_seen_at.as_millis() >= TOUCH_EVERY_MILLIS {
        state.store.touch_session(session.id, now).await?;
    }
    let access = state
        .member_access(session.org_id, member.role.clone())
        .await?;
    context.actor_user = Some(user.id);
    context.reach = reach_of(&access, user.id);
    context.session_role = Some(member.role);
    Ok(Principal {
        org: session.org_id,
        actor: Actor::User {
            user: UserSummary {
                id: user.id,
                display_name: user.display_name,
                email: user.email,
            },
            via: Via::Session(Box::new(session)),
        },
        access,
        context,
    })
}

/// The CSRF token of the request's session cookie of `kind` (for `/v1/users/me` and the
/// dashboard's forms, so a reloaded page can find it again).
pub fn csrf_token_of(headers: &HeaderMap, kind: SessionKind, state: &AppState) -> Option<String> {
    presented_of(headers, kind).map(|cookie| state.csrf.token_for(&cookie.token))
}
