//! The webhook endpoints API, for whoever manages the organization (owners, admins, a
//! management key with `admin:full`): `/v1/webhooks` to add, list, change and remove
//! endpoints, give one a new signing secret, list its delivery attempts and send an event
//! again. The signing secret is shown once, when made.
//!
//! A URL must be `https://` (`http://` under the local-development switch) and must not name a
//! private, loopback or link-local address; names are checked again on every delivery, on the
//! address actually connected to ([`super::address_guard`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{EventId, WebhookId};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use utoipa::ToSchema;

use super::address_guard::literal_allowed;
use super::views::{
    AttemptPage, AttemptQuery, WebhookList, WebhookView, WebhookWithSecret, attempt_view,
    cursor_of, parse_cursor,
};
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::input::page::LISTING;
use crate::openapi::formats::{EventTypeFormat, WebhookUrlFormat};
use crate::portal::urls::web_url;
use crate::state::AppState;
use crate::store::outbox::EventType;
use crate::store::webhooks::SALT_LEN;
use crate::store::{NewWebhook, StoreError, WebhookChanges};

/// How long a replaced signing secret still signs, in milliseconds.
pub const PREVIOUS_SECRET_MS: i64 = 24 * 3_600_000;
/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 200;

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…` (`http://` under the local-development switch).
    #[schema(value_type = WebhookUrlFormat)]
    pub url: String,
    /// At least one of `key.created`, `key.updated`, `key.rotated`, `key.revoked`,
    /// `key.leaked`, `key.expiring`, `key.expired`, `key.rate_limited`, `member.removed`,
    /// `webhook.disabled` (repeats are taken once).
    #[schema(value_type = Vec<EventTypeFormat>, min_items = 1)]
    pub events: Vec<String>,
    /// Up to 200 characters, no control characters.
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH /v1/webhooks/{id}`: the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    /// New URL.
    #[schema(value_type = Option<WebhookUrlFormat>)]
    pub url: Option<String>,
    /// New event types (replacing the old; at least one).
    #[schema(value_type = Option<Vec<EventTypeFormat>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// New description: up to 200 characters, no control characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    /// Enable (clears a failure streak) or disable.
    pub enabled: Option<bool>,
}

fn webhook_id(text: &str) -> Result<WebhookId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound("webhook endpoint"))
}

fn from_store(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound("webhook endpoint"),
        other => other.into(),
    }
}

/// A URL deliveries may go to.
fn endpoint_url(text: &str, local_dev: bool) -> Result<String, ApiError> {
    let url = web_url(text.trim(), local_dev, "url")
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    let host = reqwest::Url::parse(&url)
        .ok()
        .and_then(|parsed| parsed.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    // `localhost.` is `localhost`: a name's final dot changes nothing.
    let host = host.trim_end_matches('.');
    let local_name = host == "localhost" || host.ends_with(".localhost");
    if !local_dev && (local_name || !literal_allowed(host, false)) {
        return Err(ApiError::InvalidRequest(
            "url must not point at a private, loopback or link-local address".into(),
        ));
    }
    Ok(url)
}

fn event_types(names: &[String]) -> Result<Vec<EventType>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::InvalidRequest(
            "events must name at least one event type".into(),
        ));
    }
    let mut kinds = Vec::with_capacity(names.len());
    for name in names {
        let kind = EventType::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
            ApiError::InvalidRequest(format!(
                "unknown event type `{name}` (known: {})",
                known.join(", ")
            ))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn description(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text.map(|text| text.trim().to_owned()) {
        Some(text) if text.chars().count() > MAX_DESCRIPTION => Err(ApiError::InvalidRequest(
            format!("description must be at most {MAX_DESCRIPTION} characters"),
        )),
        Some(text) if text.chars().any(char::is_control) => Err(ApiError::InvalidRequest(
            "description must not contain control characters".into(),
        )),
        other => Ok(other),
    }
}

fn salt() -> Result<[u8; SALT_LEN], ApiError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|error| ApiError::internal(anyhow::anyhow!(error)))?;
    Ok(salt)
}

/// Add a webhook endpoint. The response holds its signing secret; it is never shown again.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created, with the signing secret (shown once)", body = WebhookWithSecret),
        (status = 400, description = "A bad URL, an unknown event type or a description too long", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The organization has 20 endpoints (`too_many_webhooks`)", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    principal.require(Permission::ManageMembers)?;
    let new = NewWebhook {
        id: WebhookId::generate().map_err(|error| ApiError::internal(anyhow::anyhow!(error)))?,
        org: principal.org,
        url: endpoint_url(&body.url, state.policy.local_dev)?,
        description: description(body.description)?.unwrap_or_default(),
        events: event_types(&body.events)?,
        enabled: body.enabled.unwrap_or(true),
        salt: salt()?,
    };
    let record = state
        .store
        .create_webhook(new, &principal.context, state.now())
        .await
        .map_err(from_store)?;
    let secret = state.webhook_secrets.secret(&record.salt);
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: WebhookView::of(&record, state.now()),
            secret: secret.expose_secret().to_owned(),
        }),
    ))
}

/// The organization's webhook endpoints.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<WebhookList>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let records = state.store.webhooks(principal.org).await?;
    let now = state.now();
    Ok(Json(WebhookList {
        items: records
            .iter()
            .map(|record| WebhookView::of(record, now))
            .collect(),
    }))
}

/// One webhook endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`whk_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookView>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let record = state
        .store
        .webhook(principal.org, webhook_id(&id)?)
        .await
        .map_err(from_store)?;
    Ok(Json(WebhookView::of(&record, state.now())))
}

/// Change an endpoint's URL, events, description, or enable / disable it.
#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`whk_…`)")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookView),
        (status = 400, description = "A bad URL, an unknown event type or a description too long", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn update_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let id = webhook_id(&id)?;
    let changes = WebhookChanges {
        url: body
            .url
            .map(|url| endpoint_url(&url, state.policy.local_dev))
            .transpose()?,
        description: description(body.description)?,
        events: body.events.map(|names| event_types(&names)).transpose()?,
        enabled: body.enabled,
    };
    let record = state
        .store
        .update_webhook(principal.org, id, changes, &principal.context, state.now())
        .await
        .map_err(from_store)?;
    Ok(Json(WebhookView::of(&record, state.now())))
}

/// Remove an endpoint, with its pending deliveries and its attempts.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`whk_…`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageMembers)?;
    state
        .store
        .delete_webhook(
            principal.org,
            webhook_id(&id)?,
            &principal.context,
            state.now(),
        )
        .await
        .map_err(from_store)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give an endpoint a new signing secret (shown once). For 24 hours deliveries carry a
/// signature with the old secret too, so the receiver can switch without missing any (and with
/// the secrets replaced in the 24 hours before, up to four in all).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`whk_…`)")),
    responses(
        (status = 200, description = "The endpoint and its new secret (shown once)", body = WebhookWithSecret),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let now = state.now();
    let until = Timestamp(now.as_millis() + PREVIOUS_SECRET_MS);
    let record = state
        .store
        .rotate_webhook_secret(
            principal.org,
            webhook_id(&id)?,
            salt()?,
            until,
            &principal.context,
            now,
        )
        .await
        .map_err(from_store)?;
    let secret = state.webhook_secrets.secret(&record.salt);
    Ok(Json(WebhookWithSecret {
        webhook: WebhookView::of(&record, now),
        secret: secret.expose_secret().to_owned(),
    }))
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/attempts", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`whk_…`)"), AttemptQuery),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptPage),
        (status = 400, description = "A bad limit or cursor", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_attempts(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AttemptQuery>,
) -> Result<Json<AttemptPage>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let limit = LISTING.size(query.limit)?;
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let page = state
        .store
        .webhook_attempts(principal.org, webhook_id(&id)?, before, limit)
        .await
        .map_err(from_store)?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(cursor_of))
        .flatten();
    Ok(Json(AttemptPage {
        items: page.items.iter().map(attempt_view).collect(),
        next_cursor,
    }))
}

/// Send one event to the endpoint again, now (also after it was delivered or given up).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/events/{event_id}/redeliver", tag = "webhooks",
    params(
        ("id" = String, Path, description = "Endpoint id (`whk_…`)"),
        ("event_id" = String, Path, description = "Event id (`evt_…`)"),
    ),
    responses(
        (status = 202, description = "Queued: the delivery worker sends it within a second"),
        (status = 403, description = "Your role may not manage the organization's webhooks", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such endpoint or event in this organization", body = crate::openapi::ErrorResponse),
        (status = 409, description = "The endpoint is disabled (`webhook_disabled`): enable it first", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, event)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let event: EventId = event
        .parse()
        .map_err(|_| ApiError::NotFound("webhook event"))?;
    state
        .store
        .redeliver(
            principal.org,
            webhook_id(&id)?,
            event,
            &principal.context,
            state.now(),
        )
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound("webhook endpoint or event"),
            other => other.into(),
        })?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::limits::MAX_URL_LEN;
    use crate::openapi::patterns::{
        property_config, strings, web_url_pattern, webhook_url_pattern,
    };

    proptest! {
        #![proptest_config(property_config())]

        #[test]
        fn every_url_of_the_documents_pattern_is_taken(text in strings(&webhook_url_pattern(false))) {
            prop_assume!(text.len() <= MAX_URL_LEN);
            prop_assert!(endpoint_url(&text, false).is_ok(), "{text}");
        }

        #[test]
        fn every_url_of_the_local_pattern_is_taken_in_local_development(
            text in strings(&web_url_pattern(true))
        ) {
            prop_assume!(text.len() <= MAX_URL_LEN);
            prop_assert_eq!(webhook_url_pattern(true), web_url_pattern(true));
            prop_assert!(endpoint_url(&text, true).is_ok(), "{text}");
        }
    }

    #[test]
    fn urls_must_be_https_and_public_unless_local_development_allows_otherwise() {
        assert!(endpoint_url("https://hooks.example.com/in", false).is_ok());
        for refused in [
            "http://hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://[::1]/in",
            "https://10.0.0.7/in",
            "https://169.254.169.254/latest",
            "https://localhost/in",
            "https://api.localhost/in",
            "https://localhost./in",
            "ftp://hooks.example.com",
            "not a url",
        ] {
            assert!(endpoint_url(refused, false).is_err(), "{refused} accepted");
        }
        assert!(endpoint_url("http://127.0.0.1:9000/in", true).is_ok());
    }

    #[test]
    fn event_types_are_known_and_deduplicated() {
        let names = ["key.revoked".to_owned(), "key.revoked".to_owned()];
        assert_eq!(
            event_types(&names).expect("known"),
            vec![EventType::KeyRevoked]
        );
        assert!(event_types(&[]).is_err());
        assert!(event_types(&["key.deleted".to_owned()]).is_err());
    }
}
