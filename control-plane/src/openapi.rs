//! The OpenAPI document served at `/openapi.json`, generated from the route annotations
//! (utoipa): the router and the document are built from the same `routes!` lists. What every
//! route of a kind answers alike (the extractors' refusals, authentication's, the database's) is
//! added to each such operation by [`complete_responses`], so no annotation can forget it. What
//! depends on the deployment (its rate-limit ceiling, its key prefix, the local-development
//! policy) is written in by [`for_deployment`] when the served document is built, and a rule
//! across a body's fields by [`require_one_of`]. The string formats that fields share (scopes,
//! URLs, origins…) are named schemas: see [`formats`], and [`patterns`] for their expressions.

pub mod formats;
pub mod patterns;

use keyplane_shared::KeyPrefix;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::ceiling::RateLimitCeiling;
use crate::limits::MAX_BODY_BYTES;

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
    components(schemas(
        ErrorResponse,
        ErrorObject,
        formats::ScopeFormat,
        formats::RoleNameFormat,
        formats::EmailFormat,
        formats::WebUrlFormat,
        formats::HttpsUrlFormat,
        formats::WebhookUrlFormat,
        formats::OriginFormat,
        formats::ClientAddressFormat,
        formats::ClientAddressListFormat,
        formats::DayFormat,
        formats::ChangeableRoleFormat,
        formats::AttemptCursorFormat,
        formats::EventTypeFormat,
        formats::FullKeyFormat,
    )),
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

/// Adds to every operation the answers its kind of route gives whatever the handler does,
/// where the annotation does not already name them:
/// - 401 to those that take a management credential (a key, a host product's token or a
///   session: none, or one that is unknown, revoked or expired);
/// - 403 to those that take a management key (one without `api-keys:manage` or `admin:full`
///   is refused before any handler runs), or a session on an unsafe method (no matching
///   `Origin` or CSRF token: `csrf_failed` is added to a route's own 403 too);
/// - 503 to those that take any credential (checking it reads the database);
/// - 400, 413 and 415 to those that take a JSON body (the body extractor's refusals);
/// - 409 `role_changed` to the changes of an organization a person makes with a session (the
///   unsafe methods that take both a management key and a session, each of which goes through
///   `OrgMutation::begin_for`): their standing is checked again under the organization's lock.
pub fn complete_responses(document: &mut utoipa::openapi::OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (true, &mut item.delete),
            (true, &mut item.patch),
        ];
        for (unsafe_method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let schemes = security_schemes(operation);
            let takes = |name: &str| schemes.iter().any(|scheme| scheme == name);
            let management_key = takes("api_key") || takes("bearer");
            let session = takes("session");
            if management_key || session {
                add_response(
                    operation,
                    "401",
                    "Not authenticated: no credential, or one that is unknown, revoked or expired",
                );
            }
            let forbidden = match (management_key, session && unsafe_method) {
                (true, true) => Some(
                    "A management key without `api-keys:manage` or `admin:full` \
                     (`insufficient_scope`), or a session's request without its page's \
                     `Origin` and CSRF token (`csrf_failed`)",
                ),
                (true, false) => Some(
                    "A management key without `api-keys:manage` or `admin:full` \
                     (`insufficient_scope`)",
                ),
                (false, true) => Some(
                    "A session's request without its page's `Origin` and CSRF token \
                     (`csrf_failed`)",
                ),
                (false, false) => None,
            };
            if let Some(description) = forbidden {
                add_response(operation, "403", description);
            }
            // A route's own 403 text names its own refusals; a session's missing CSRF token is
            // refused before the handler runs.
            if session && unsafe_method {
                add_case(operation, "403", "csrf_failed", CSRF_FAILED);
            }
            // Those a management key and a session both take are the organization's changes
            // (a session's own routes take a session and a host token).
            if takes("api_key") && session && unsafe_method {
                add_case(operation, "409", "role_changed", ROLE_CHANGED);
            }
            if !schemes.is_empty() {
                add_response(
                    operation,
                    "503",
                    if takes("bearer") {
                        "The database, or a host product's signing keys, cannot be reached \
                         (`unavailable`); retry later"
                    } else {
                        "The database cannot be reached (`unavailable`); retry later"
                    },
                );
            }
            if takes_json(operation) {
                add_response(
                    operation,
                    "400",
                    "The body is not valid JSON of this shape (`invalid_json`), or a value is \
                     refused (`invalid_request`)",
                );
                add_response(
                    operation,
                    "413",
                    &format!("The body is larger than {MAX_BODY_BYTES} bytes"),
                );
                add_response(operation, "415", "The body is not `application/json`");
            }
        }
    }
}

/// This deployment's own rules, which the document states as they are here.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    /// The rate-limit ceiling (`--max-rate-limit`): the most a key's rate limit may be.
    pub ceiling: RateLimitCeiling,
    /// The key prefix, in the format of a full key.
    pub prefix: &'a KeyPrefix,
    /// The local-development policy: `http://` URLs and origins, and webhooks to any host.
    pub local_dev: bool,
}

/// Writes this deployment's own rules into the document: the rate-limit ceiling as the maximum
/// of a key's rate limit, the key prefix into the format of a full key, and, under the
/// local-development policy, the wider URLs and origins it takes.
pub fn for_deployment(document: &mut utoipa::openapi::OpenApi, deployment: Deployment<'_>) {
    let Deployment {
        ceiling,
        prefix,
        local_dev,
    } = deployment;
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let most = ceiling.limit();
    if let Some(RefOr::T(Schema::Object(limit))) = components.schemas.get_mut("RateLimitBody") {
        let bounds = [
            ("requests_per_minute", most.requests_per_minute()),
            ("burst", u32::from(most.burst())),
        ];
        for (field, maximum) in bounds {
            if let Some(RefOr::T(Schema::Object(property))) = limit.properties.get_mut(field) {
                property.maximum = Some(maximum.into());
                property.description = Some(format!(
                    "{} At most {maximum} on this deployment (its ceiling, `{ceiling}`).",
                    property.description.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    let patterns = [
        (
            formats::FullKeyFormat::name(),
            patterns::full_key_pattern(prefix.as_str()),
        ),
        (
            formats::WebUrlFormat::name(),
            patterns::web_url_pattern(local_dev),
        ),
        (
            formats::WebhookUrlFormat::name(),
            patterns::webhook_url_pattern(local_dev),
        ),
        (
            formats::OriginFormat::name(),
            patterns::origin_pattern(local_dev),
        ),
    ];
    for (name, pattern) in patterns {
        if let Some(RefOr::T(Schema::Object(format))) = components.schemas.get_mut(name.as_ref()) {
            format.pattern = Some(pattern);
        }
    }
}

/// States a rule across a body's fields that a derived schema cannot carry: the component `name`
/// requires at least one of `fields`, each present and, where a type is given, of that type (so
/// not `null`); written as `allOf` the schema and an `anyOf` of the fields.
pub fn require_one_of(
    document: &mut utoipa::openapi::OpenApi,
    name: &str,
    fields: &[(&str, Option<Type>)],
) {
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let Some(schema) = components.schemas.remove(name) else {
        return;
    };
    let mut any = AnyOfBuilder::new();
    for (field, kind) in fields {
        let mut one = ObjectBuilder::new()
            .schema_type(Type::Object)
            .required(*field);
        if let Some(kind) = kind {
            one = one.property(*field, ObjectBuilder::new().schema_type(kind.clone()));
        }
        any = any.item(one);
    }
    let description = match &schema {
        RefOr::T(Schema::Object(object)) => object.description.clone(),
        _ => None,
    };
    let whole = AllOfBuilder::new()
        .description(description)
        .item(schema)
        .item(any);
    components.schemas.insert(name.to_owned(), whole.into());
}

/// The names of the security schemes the operation accepts.
fn security_schemes(operation: &Operation) -> Vec<String> {
    let Some(security) = &operation.security else {
        return Vec::new();
    };
    // Serialized, a requirement is an object keyed by scheme name (its map is private).
    security
        .iter()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| {
            value
                .as_object()
                .map(|schemes| schemes.keys().cloned().collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

fn takes_json(operation: &Operation) -> bool {
    operation
        .request_body
        .as_ref()
        .is_some_and(|body| match body {
            RefOr::T(body) => body.content.contains_key("application/json"),
            RefOr::Ref(_) => false,
        })
}

/// What a session's change of an organization answers when the person's role changed while the
/// call waited (`Conflict::RoleChanged`).
const ROLE_CHANGED: &str = "The signed-in person's role, or its scopes, changed while the call \
     waited (`role_changed`): nothing was changed; made again, the call is judged under the new role";

/// What a session's unsafe request without its page's `Origin` and CSRF token answers.
const CSRF_FAILED: &str =
    "A session's request without its page's `Origin` and CSRF token (`csrf_failed`)";

/// Adds `description`, the case of the answer with `status` whose error code is `code`, to that
/// answer as one more case of it, unless it names `code` already; or adds that answer with it
/// alone.
fn add_case(operation: &mut Operation, status: &str, code: &str, description: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(response)) if response.description.contains(&format!("`{code}`")) => {}
        Some(RefOr::T(response)) => {
            response.description = format!(
                "{}; or: {description}",
                response.description.trim_end_matches('.')
            );
        }
        Some(RefOr::Ref(_)) => {}
        None => add_response(operation, status, description),
    }
}

fn add_response(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorResponse"))),
                    )
                    .build(),
            )
        });
}
