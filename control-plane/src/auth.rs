//! Who is calling: the [`Principal`] every management handler receives, whichever of the three
//! ways the call authenticated.
//!
//! - A management key (`x-api-key`, or `Authorization: Bearer` with a Keyplane key): see
//!   [`key`].
//! - A host product's token (`Authorization: Bearer` with a JWT): see [`host`].
//! - A session cookie (the dashboard and the embedded portal): see [`session`]; unsafe methods
//!   also need a matching `Origin` and the session's CSRF token.
//!
//! A request that presents an `x-api-key` or `Authorization` header is judged by it alone (a
//! cookie beside it is ignored), so a credential is never silently swapped for another.
//! Edges' signed requests are a separate thing: [`edge`].

pub mod edge;
pub mod host;
pub mod key;
pub mod session;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use keyplane_shared::ids::{KeyId, OrgId, UserId};

use crate::access::{Access, Permission};
use crate::error::{ApiError, CurrentRequestId};
use crate::state::AppState;
use crate::store::{AuditContext, KeyRecord, Reach, SessionKind, SessionRecord, UserSummary};

/// Who makes a key, and who will own it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyMaker {
    /// The management key making it.
    pub key: Option<KeyId>,
    /// The user making it.
    pub user: Option<UserId>,
    /// Its owner: the user, or the management key's owner (none before the first owner).
    pub owner: Option<UserId>,
}

/// An authenticated caller: who, in which organization, allowed to do what.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The organization every call is confined to.
    pub org: OrgId,
    /// Who.
    pub actor: Actor,
    /// What it may do there.
    pub access: Access,
    /// Who and where, for the audit log, with the reach the store enforces.
    pub context: AuditContext,
}

/// Who a principal is.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A management key.
    Key(Box<KeyRecord>),
    /// A person.
    User {
        /// Who.
        user: UserSummary,
        /// How they signed in.
        via: Via,
    },
}

/// How a person's call was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// A session cookie.
    Session(Box<SessionRecord>),
    /// A host product's token from this issuer.
    HostToken {
        /// The token's issuer.
        issuer: String,
    },
}

impl Principal {
    /// Refuses with 403 `forbidden` unless the caller may do `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.access.may(permission) {
            Ok(())
        } else {
            let role = self
                .access
                .role
                .as_ref()
                .map_or("this key", |role| role.as_str());
            Err(ApiError::Forbidden(format!(
                "the `{role}` role may not do this"
            )))
        }
    }

    /// The user acting: the person, or the owner of the management key.
    pub fn user_id(&self) -> Option<UserId> {
        match &self.actor {
            Actor::Key(key) => key.owner_id,
            Actor::User { user, .. } => Some(user.id),
        }
    }

    /// The person signed in, if the call came from one.
    pub fn person(&self) -> Option<&UserSummary> {
        match &self.actor {
            Actor::User { user, .. } => Some(user),
            Actor::Key(_) => None,
        }
    }

    /// Who a key this caller makes names as its maker and owner.
    pub fn key_maker(&self) -> KeyMaker {
        match &self.actor {
            Actor::Key(key) => KeyMaker {
                key: Some(key.id),
                user: None,
                owner: key.owner_id,
            },
            Actor::User { user, .. } => KeyMaker {
                key: None,
                user: Some(user.id),
                owner: Some(user.id),
            },
        }
    }

    /// The method in the API's words: `management_key`, `session` or `host_token`.
    pub fn method(&self) -> &'static str {
        match &self.actor {
            Actor::Key(_) => "management_key",
            Actor::User {
                via: Via::Session(_),
                ..
            } => "session",
            Actor::User {
                via: Via::HostToken { .. },
                ..
            } => "host_token",
        }
    }
}

/// The reach of a person with `access`: keys within the ceiling, and only their own unless
/// they manage every key.
pub(crate) fn reach_of(access: &Access, user: UserId) -> Reach {
    Reach {
        ceiling: access.ceiling.clone(),
        owner: (!access.may(Permission::ManageAllKeys)).then_some(user),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let context = audit_context(parts, state);
        let presents_credentials =
            parts.headers.contains_key("x-api-key") || parts.headers.contains_key("authorization");
        if presents_credentials {
            if let Some(token) = host::bearer_jwt(&parts.headers) {
                return host::authenticate(token, state, context).await;
            }
            return key::authenticate(parts, state, context).await;
        }
        if let Some(cookie) = session::presented(&parts.headers) {
            let kind = cookie.kind;
            let first = session::authenticate(parts, cookie, state, context.clone()).await;
            // A browser holding both cookies: a stale dashboard cookie does not hide a live
            // portal session (a portal opened in a tab). The other way round it would: a frame
            // whose portal session is over is told so, not served a dashboard page it cannot
            // show.
            let result = match session::presented_besides(&parts.headers, kind) {
                Some(other)
                    if kind == SessionKind::Dashboard
                        && matches!(first, Err(ApiError::InvalidSession)) =>
                {
                    session::authenticate(parts, other, state, context).await
                }
                _ => first,
            };
            if matches!(result, Err(ApiError::InvalidSession)) {
                state.metrics.auth_failed("invalid_session");
            }
            return result;
        }
        state.metrics.auth_failed("missing_api_key");
        Err(ApiError::MissingKey)
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Client address (through the trusted proxies, [`crate::client_address`]), user agent and
/// request id of a request.
pub(crate) fn audit_context(parts: &Parts, state: &AppState) -> AuditContext {
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip = state
        .trusted_proxies
        .client(peer, &parts.headers)
        .map(|address| address.to_string());
    let user_agent = header(&parts.headers, "user-agent").map(|ua| ua.chars().take(512).collect());
    let request_id = parts
        .extensions
        .get::<CurrentRequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    AuditContext {
        ip,
        user_agent,
        request_id,
        ..AuditContext::default()
    }
}

/// Where an unauthenticated request (sign-in, accepting an invitation) comes from, for the
/// throttle and the audit log, with its headers.
#[derive(Debug, Clone)]
pub struct Anonymous {
    /// Address, user agent, request id.
    pub context: AuditContext,
    /// The request's headers.
    pub headers: HeaderMap,
}

impl FromRequestParts<AppState> for Anonymous {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Anonymous {
            context: audit_context(parts, state),
            headers: parts.headers.clone(),
        })
    }
}
