//! When an organization is told a key will expire: `GET /v1/organization/expiry-notices`
//! (anyone who can read) and `PUT /v1/organization/expiry-notices` (owners, admins, a
//! management key with `admin:full`), audited as `expiry_notices_updated`. Until it is set,
//! `key.expiring` is announced [`super::expiry::DEFAULT_DAYS_BEFORE`] days before.
//!
//! A lead time is one of [`CHOICES`] days (a fixed menu keeps the scheduler's work bounded
//! however many organizations choose: one look per value in use); at most [`MAX_NOTICES`] of
//! them, stored distinct and longest first; none turns `key.expiring` (and its email) off,
//! while `key.expired` is still announced. A change applies to the notices not yet sent (a key
//! already told of a shorter lead time is not told of a longer one added since).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::expiry::DEFAULT_DAYS_BEFORE;
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::input::time::rfc3339;
use crate::state::AppState;
use crate::store::StoreError;

/// The lead times an organization may choose, in days.
pub const CHOICES: [u32; 7] = [1, 3, 7, 14, 30, 60, 90];
/// The most lead times.
pub const MAX_NOTICES: usize = 5;

/// An organization's expiry notices, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExpiryNoticesView {
    /// Days before a key's expiry that `key.expiring` is announced, longest first.
    pub days_before: Vec<u32>,
    /// Whether these are the defaults (the organization set none).
    pub default: bool,
    /// When the organization set them (RFC 3339).
    pub updated_at: Option<String>,
}

/// The document's schema of `days_before`: at most [`MAX_NOTICES`] of [`CHOICES`] (a field's
/// schema given this way has no description of its own, so it is given here).
fn days_before_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .description(Some(
            "Up to 5 entries (counted as sent), each one of 1, 3, 7, 14, 30, 60 and 90 \
             days; a repeat counts but is kept once (`[]`: no `key.expiring` at all)",
        ))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some(CHOICES)),
        )
        .max_items(Some(MAX_NOTICES))
        .build()
}

/// Body of `PUT /v1/organization/expiry-notices`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpiryNoticesRequest {
    /// Up to 5 entries (counted as sent), each one of 1, 3, 7, 14, 30, 60 and 90 days; a
    /// repeat counts but is kept once (`[]`: no `key.expiring` at all).
    #[serde(deserialize_with = "crate::input::whole::numbers")]
    #[schema(schema_with = days_before_schema)]
    pub days_before: Vec<u32>,
}

impl ExpiryNoticesRequest {
    /// Distinct, longest first; the message when a value or the count is out of bounds. The
    /// count is of the list as sent, repeats included (what a schema's `maxItems` states).
    pub fn parse(self) -> Result<Vec<u32>, String> {
        let mut days = self.days_before;
        if let Some(bad) = days.iter().find(|day| !CHOICES.contains(*day)) {
            let choices: Vec<String> = CHOICES.iter().map(u32::to_string).collect();
            return Err(format!(
                "days_before: {bad} is not one of {} days",
                choices.join(", ")
            ));
        }
        if days.len() > MAX_NOTICES {
            return Err(format!(
                "days_before holds at most {MAX_NOTICES} lead times"
            ));
        }
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        Ok(days)
    }
}

/// When your organization is told that a key will expire.
#[utoipa::path(
    get, path = "/v1/organization/expiry-notices", tag = "webhooks",
    responses((status = 200, description = "The lead times", body = ExpiryNoticesView)),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn get_expiry_notices(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ExpiryNoticesView>, ApiError> {
    principal.require(Permission::Read)?;
    let chosen = state.store.expiry_notice_days(principal.org).await?;
    Ok(Json(match chosen {
        Some(chosen) => ExpiryNoticesView {
            days_before: chosen.days_before,
            default: false,
            updated_at: Some(rfc3339(chosen.updated_at)),
        },
        None => ExpiryNoticesView {
            days_before: DEFAULT_DAYS_BEFORE.to_vec(),
            default: true,
            updated_at: None,
        },
    }))
}

/// Choose when your organization is told that a key will expire (owners, admins, or a
/// management key with `admin:full`).
#[utoipa::path(
    put, path = "/v1/organization/expiry-notices", tag = "webhooks",
    request_body = ExpiryNoticesRequest,
    responses(
        (status = 200, description = "The lead times as stored", body = ExpiryNoticesView),
        (status = 400, description = "A lead time is out of bounds (the message says which)", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Your role may not change the organization's settings", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn put_expiry_notices(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ExpiryNoticesRequest>,
) -> Result<Json<ExpiryNoticesView>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let days = body.parse().map_err(ApiError::InvalidRequest)?;
    let stored = state
        .store
        .put_expiry_notice_days(principal.org, &days, &principal.context, state.now())
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound("organization"),
            other => other.into(),
        })?;
    Ok(Json(ExpiryNoticesView {
        days_before: stored.days_before,
        default: false,
        updated_at: Some(rfc3339(stored.updated_at)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(days: &[u32]) -> Result<Vec<u32>, String> {
        ExpiryNoticesRequest {
            days_before: days.to_vec(),
        }
        .parse()
    }

    #[test]
    fn lead_times_are_distinct_longest_first_and_from_the_menu() {
        assert_eq!(parse(&[1, 30, 7, 30]), Ok(vec![30, 7, 1]));
        assert_eq!(parse(&[]), Ok(vec![]));
        assert_eq!(parse(&[90, 1]), Ok(vec![90, 1]));
        for bad in [0, 2, 91, 365] {
            assert!(
                parse(&[bad])
                    .is_err_and(|message| message.contains(&format!("{bad} is not one of"))),
                "{bad}"
            );
        }
        assert_eq!(parse(&[1, 3, 7, 30, 30]), Ok(vec![30, 7, 3, 1]));
        assert!(parse(&[1, 3, 7, 14, 30, 60]).is_err_and(|message| message.contains("at most 5")));
        // Six entries are too many even when a repeat makes them five lead times.
        assert!(parse(&[1, 3, 7, 14, 30, 30]).is_err_and(|message| message.contains("at most 5")));
    }
}
