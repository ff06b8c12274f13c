//! `GET /v1/keys/{id}/usage` (one key's requests as the edges reported them, newest first) and
//! `GET /v1/keys/{id}/usage/daily` (its requests per UTC day and status, for charts).
//!
//! Management routes like the rest of `/v1/keys`: a management key, and only keys of its
//! organization (another organization's key id is 404, like one that does not exist).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use axum::Json;
use axum::extract::State;
use keyplane_shared::ids::KeyId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::{self, UsageCursor};
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::input::time::rfc3339;
use crate::openapi::formats::{ClientAddressFormat, DayFormat};
use crate::state::AppState;
use crate::store::{UsageFilter, UsageRecord};

/// The per-key usage routes (OpenAPI tag `usage`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key_usage))
        .routes(routes!(daily_usage))
}

/// Query of `GET /v1/keys/{id}/usage`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Only requests at or after this time (RFC 3339). Default: 24 hours before `to`, or
    /// before now when `to` is absent (a `cursor` keeps the first page's start). Before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Only requests before this time (RFC 3339). Default: no bound.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only this status (`429`, 100 to 599) or class (`4xx`, `1xx` to `5xx`).
    #[param(pattern = r"^(?:[1-5][0-9]{2}|[1-5][xX]{2})$")]
    pub status: Option<String>,
    /// Only requests from this client address (exact).
    #[param(value_type = Option<ClientAddressFormat>)]
    pub ip: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (pass the same filters).
    #[param(pattern = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub cursor: Option<String>,
}

/// One request, as the edge that decided it reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The request's id (`req_…`; the origin saw it in `x-keyplane-request-id`).
    pub request_id: String,
    /// When the edge decided (RFC 3339).
    pub at: String,
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// The status the caller got (the edge's own 401/403/429, or the origin's).
    pub status: u16,
    /// Client address (`CF-Connecting-IP`).
    pub ip: Option<String>,
    /// The edge that reported it.
    pub edge: String,
}

impl From<&UsageRecord> for UsageView {
    fn from(record: &UsageRecord) -> Self {
        UsageView {
            request_id: record.request_id.to_string(),
            at: rfc3339(record.at),
            method: record.method.clone(),
            path: record.path.clone(),
            status: record.status,
            ip: record.ip.clone(),
            edge: record.edge.clone(),
        }
    }
}

/// A page of a key's requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    /// Requests, newest first.
    pub data: Vec<UsageView>,
    /// Pass as `cursor` (with the same filters) for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/keys/{id}/usage/daily`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// First day (`2026-11-22`, or an RFC 3339 time meaning its UTC day). Default: 29 days
    /// before `to`.
    #[param(value_type = Option<DayFormat>)]
    pub from: Option<String>,
    /// Last day, included (same forms). Default: today (UTC). At most 366 days from `from`.
    #[param(value_type = Option<DayFormat>)]
    pub to: Option<String>,
}

/// One UTC day's requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayView {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Requests that day.
    pub requests: u64,
    /// Requests that day by status code (`{"200": 120, "429": 3}`).
    pub by_status: BTreeMap<String, u64>,
}

/// A key's requests per UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyUsage {
    /// The key (`key_…`).
    pub key_id: String,
    /// First day of the range (`YYYY-MM-DD`).
    pub from: String,
    /// Last day of the range, included.
    pub to: String,
    /// Days with at least one request, oldest first (days without any are left out).
    pub data: Vec<DayView>,
}

/// Reads a key id from the path; a malformed id cannot name a key, so it is a 404 as well.
fn key_id(text: &str) -> Result<KeyId, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound("key"))
}

/// A key's requests, newest first.
#[utoipa::path(
    get, path = "/v1/keys/{id}/usage", tag = "usage",
    params(("id" = String, Path, description = "Key id (`key_…`)"), UsageQuery),
    responses(
        (status = 200, description = "A page of the key's requests", body = UsagePage),
        (status = 400, description = "Invalid filter or cursor", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn key_usage(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsagePage>, ApiError> {
    principal.require(Permission::Read)?;
    let id = key_id(&id)?;
    let org = principal.org;
    let cursor = query
        .cursor
        .as_deref()
        .map(UsageCursor::parse)
        .transpose()?;
    let (from, to) = input::window(
        query.from.as_deref(),
        query.to.as_deref(),
        cursor.as_ref(),
        state.now(),
    )?;
    let filter = UsageFilter {
        from: Some(from),
        to,
        status: query.status.as_deref().map(input::status).transpose()?,
        ip: query.ip.as_deref().map(crate::input::ip::ip).transpose()?,
        after: cursor.map(|cursor| (cursor.at, cursor.request_id)),
        limit: input::page_size(query.limit)?,
    };
    // 404 for a key of another organization (or none), before reading any event.
    state.store.key(org, id).await?;
    let page = state.store.list_usage(org, id, &filter).await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last())
        .flatten()
        .map(|last| {
            UsageCursor {
                at: last.at,
                request_id: last.request_id,
                from,
            }
            .encode()
        });
    let data = page.items.iter().map(UsageView::from).collect();
    Ok(Json(UsagePage { data, next_cursor }))
}

/// A key's requests per UTC day and status.
#[utoipa::path(
    get, path = "/v1/keys/{id}/usage/daily", tag = "usage",
    params(("id" = String, Path, description = "Key id (`key_…`)"), DailyQuery),
    responses(
        (status = 200, description = "Requests per day", body = DailyUsage),
        (status = 400, description = "Invalid day or a range over 366 days", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
        (status = 404, description = "No such key in this organization", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn daily_usage(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DailyQuery>,
) -> Result<Json<DailyUsage>, ApiError> {
    principal.require(Permission::Read)?;
    let id = key_id(&id)?;
    let org = principal.org;
    let range = input::day_range(query.from.as_deref(), query.to.as_deref(), state.now())?;
    state.store.key(org, id).await?;
    let counts = state
        .store
        .daily_usage(org, id, range.start(), range.days)
        .await?;
    let mut days: BTreeMap<u32, DayView> = BTreeMap::new();
    for count in counts {
        let view = match days.entry(count.day) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let day = range.day(count.day).map(input::date_text).ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("day {} is out of range", count.day))
                })?;
                entry.insert(DayView {
                    day,
                    requests: 0,
                    by_status: BTreeMap::new(),
                })
            }
        };
        view.requests += count.requests;
        *view.by_status.entry(count.status.to_string()).or_default() += count.requests;
    }
    Ok(Json(DailyUsage {
        key_id: id.to_string(),
        from: input::date_text(range.first),
        to: range.last().map(input::date_text).unwrap_or_default(),
        data: days.into_values().collect(),
    }))
}
