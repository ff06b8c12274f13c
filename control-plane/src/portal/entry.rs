//! Using a one-time portal link ([`super::links`] makes them): [`enter`], which the dashboard
//! calls when the person lands on `/portal/enter`, uses the link up and starts a portal session
//! (`SameSite=None; Secure; Partitioned` cookie) for its member.

use axum::http::HeaderValue;
use keyplane_shared::ids::{OrgId, SessionId, UserId};

use crate::accounts::tokens;
use crate::auth::Anonymous;
use crate::error::ApiError;
use crate::people::sessions::open_session;
use crate::state::AppState;
use crate::store::{SessionKind, StoreError};

/// What [`enter`] hands the dashboard: the portal session it started.
#[derive(Debug, Clone)]
pub struct PortalEntry {
    /// The `Set-Cookie` value of the portal session (`__Host-keyplane_portal`,
    /// `HttpOnly; Secure; SameSite=None; Partitioned`).
    pub set_cookie: HeaderValue,
    /// The session's CSRF token (`x-csrf-token` on unsafe requests).
    pub csrf_token: String,
    /// The session's id.
    pub session: SessionId,
    /// The organization it acts in.
    pub org: OrgId,
    /// The member it acts as.
    pub user: UserId,
    /// Where "Back to …" leads (also on the session: [`crate::store::SessionRecord::return_url`]).
    pub return_url: String,
}

/// Uses a portal link's token (from the link's fragment) and starts a portal session for its
/// member: the link is marked used in the same statement that finds it, so it works once. An
/// unknown token, a used link, an expired one, or a member who has left since, all get 401
/// `invalid_portal_link`.
pub async fn enter(
    state: &AppState,
    token: &str,
    anonymous: &Anonymous,
) -> Result<PortalEntry, ApiError> {
    let refused = || {
        state.metrics.auth_failed("invalid_portal_link");
        ApiError::InvalidPortalLink
    };
    if token.is_empty() || token.len() > 128 {
        return Err(refused());
    }
    let Some(link) = state
        .store
        .use_portal_link(&tokens::digest(token), state.now())
        .await?
    else {
        return Err(refused());
    };
    let user = match state.store.user(link.user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(refused()),
        Err(other) => return Err(other.into()),
    };
    let opened = open_session(
        state,
        &user,
        link.org_id,
        SessionKind::Portal,
        anonymous,
        Some(link.return_url.clone()),
    )
    .await
    .map_err(|error| match error {
        ApiError::NotFound(_) => refused(),
        other => other,
    })?;
    Ok(PortalEntry {
        set_cookie: opened.set_cookie,
        csrf_token: opened.csrf_token,
        session: opened.record.id,
        org: link.org_id,
        user: link.user_id,
        return_url: link.return_url,
    })
}
