//! The OpenAPI document served at `/openapi.json`, generated from the route annotations
//! (utoipa): the router and the document are built from the same `routes!` lists.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed parts; operations are added by the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyplane control plane",
        description = "Issue, rotate, revoke and audit API keys. Management calls authenticate \
                       with a Keyplane key holding `api-keys:manage` or `admin:full`."
    ),
    tags(
        (name = "keys", description = "The key lifecycle"),
        (name = "audit", description = "The append-only, hash-chained audit log"),
        (name = "portal", description = "One-time links into the embedded portal, and the \
                                         organization's branding"),
        (name = "webhooks", description = "Endpoints that receive signed events (Standard \
         Webhooks): key created, updated, rotated, revoked, leaked, expiring, expired, rate limited; member removed; endpoint disabled"),
        (name = "leaks", description = "Reports of leaked keys: a live key reported is revoked"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "usage", description = "A key's requests as the edges reported them, and \
                                        daily counts"),
        (name = "edge", description = "The change feed edges pull and the usage they report \
                                       (machine-to-machine: signed with the edge secret in \
                                       `x-keyplane-signature`, not a management key)"),
    ),
    components(schemas(ErrorResponse, ErrorObject)),
    modifiers(&ManagementKeySchemes)
)]
pub struct ApiDoc;

/// Every error response.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorResponse {
    /// What went wrong.
    error: ErrorObject,
}

/// The error object.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorObject {
    /// Machine-readable code, e.g. `invalid_request`, `not_found`.
    code: String,
    /// What went wrong, for people.
    message: String,
    /// The request's id (also in the `x-request-id` header).
    request_id: String,
}

/// The ways to present a management key, a host product's token or a session, and the edges'
/// request signature.
struct ManagementKeySchemes;

impl Modify for ManagementKeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A management key, or a host product's token (a JWT signed with a key \
                         the operator configured: see `/v1/auth/config`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::session::DASHBOARD_COOKIE,
                "A session from `POST /v1/sessions`; unsafe methods also need `Origin` and \
                 `x-csrf-token`",
            ))),
        );
        components.add_security_scheme(
            "edge_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                keyplane_shared::sync::SIGNATURE_HEADER,
                "`t=<unix seconds>,n=<nonce>,v1=<HMAC-SHA256>` over the time, nonce, method, \
                 path and query, and body, keyed with `KEYPLANE_EDGE_SECRET`",
            ))),
        );
    }
}
