//! Host-product tokens: `Authorization: Bearer <JWT>` signed by the product that embeds
//! Keyplane, verified by [`crate::host_token`] with the keys the operator configured
//! (`KEYPLANE_HOST_TOKENS`). The claims name the user (created on first sight, name and email
//! kept up to date), the organization and the role or permissions:
//!
//! - The organization: an issuer pinned to one organization acts only there; a deployment-wide
//!   issuer's organization claim is a Keyplane organization id, or the host product's own id of
//!   an organization linked to it. An unknown one is refused (404-free: 401 `invalid_token`)
//!   unless the issuer has provisioning enabled, when the organization is created and linked.
//! - The role claim names a role of that organization (built in or custom); else the
//!   permissions claim lists scopes, and the user acts as a developer with those scopes as the
//!   ceiling. A token with neither is refused.
//! - The user's membership follows the token (added or its role changed, audited).

use axum::http::HeaderMap;
use keyplane_shared::ScopeSet;
use keyplane_shared::ids::OrgId;

use super::{Actor, Principal, Via, reach_of};
use crate::access::{Access, BuiltinRole, Permission, RoleName, ScopeCeiling};
use crate::error::ApiError;
use crate::host_token::HostClaims;
use crate::state::AppState;
use crate::store::{AuditContext, HostUser, JudgedMember, StoreError, UserSummary};

/// The bearer token of `Authorization`, if it has the shape of a JWT (three dot-separated
/// parts; a Keyplane key never has a dot).
pub fn bearer_jwt(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.split('.').count() == 3).then_some(token)
}

pub(crate) fn refused(state: &AppState, code: &'static str) -> ApiError {
    state.metrics.auth_failed("invalid_token");
    ApiError::InvalidHostToken(code)
}

/// The Keyplane organization `issuer`'s organization `organization` names (a Keyplane id, or
/// the host product's own id of a linked organization), provisioned if the issuer allows it.
pub(crate) async fn resolve_organization(
    state: &AppState,
    issuer: &str,
    organization: &str,
    pinned: bool,
    provision: bool,
    context: &AuditContext,
) -> Result<OrgId, ApiError> {
    if let Ok(id) = organization.parse::<OrgId>()
        && state.store.org_name(id).await?.is_some()
    {
        return Ok(id);
    }
    if let Some(id) = state.store.linked_org(issuer, organization).await? {
        return Ok(id);
    }
    if provision && !pinned {
        return Ok(state
            .store
            .provision_org(issuer, organization, context, state.now())
            .await?);
    }
    Err(refused(state, "unknown_organization"))
}

/// The organization the claims name, provisioned if the issuer allows it.
async fn organization(
    state: &AppState,
    claims: &HostClaims,
    context: &AuditContext,
) -> Result<OrgId, ApiError> {
    resolve_organization(
        state,
        &claims.issuer,
        &claims.organization,
        claims.pinned_organization,
        claims.provision_organizations,
        context,
    )
    .await
}

/// Authenticates a host product's token.
pub(super) async fn authenticate(
    token: &str,
    state: &AppState,
    mut context: AuditContext,
) -> Result<Principal, ApiError> {
    let now = state.now();
    let claims = state
        .host_tokens
        .verify(token, now.as_millis().div_euclid(1000))
        .await
        .map_err(|error| refused(state, error.code()))?;
    let org = organization(state, &claims, &context).await?;
    let user = state
        .store
        .host_user(
            HostUser {
                issuer: claims.issuer.clone(),
                subject: claims.subject.clone(),
                display_name: claims.display_name.chars().take(200).collect(),
                email: claims
                    .email
                    .as_ref()
                    .map(|email| email.trim().to_lowercase()),
            },
            now,
        )
        .await?;
    let (role, permissions) = match (&claims.role, &claims.permissions) {
        (Some(role), _) => (
            RoleName::parse(role).map_err(|_| refused(state, "unknown_role"))?,
            None,
        ),
        (None, Some(permissions)) => (
            RoleName::Builtin(BuiltinRole::Developer),
            Some(ScopeSet::parse(permissions).map_err(|_| refused(state, "invalid_permissions"))?),
        ),
        (None, None) => return Err(refused(state, "no_role")),
    };
    context.actor_user = Some(user.id);
    let access = match permissions {
        Some(scopes) => {
            let operator = false;
            Access::of_member(role.clone(), ScopeCeiling::Only(scopes), operator)
        }
        None => match state.member_access(org, role.clone()).await {
            Ok(access) => access,
            Err(ApiError::NotFound(_)) => return Err(refused(state, "unknown_role")),
            Err(other) => return Err(other),
        },
    };
    match state
        .store
        .sync_member(org, user.id, &role, JudgedMember::Unjudged, &context, now)
        .await
    {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(other) => return Err(other.into()),
    }
    context.reach = reach_of(&access, user.id);
    debug_assert!(access.may(Permission::Read));
    Ok(Principal {
        org,
        actor: Actor::User {
            user: UserSummary {
                id: user.id,
                display_name: user.display_name,
                email: user.email,
            },
            via: Via::HostToken {
                issuer: claims.issuer,
            },
        },
        access,
        context,
    })
}
