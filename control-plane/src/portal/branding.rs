//! An organization's branding: `GET /v1/organization/branding` (anyone who can read) and
//! `PUT /v1/organization/branding` (who manages members: owners, admins, a management key with
//! `admin:full`), audited as `branding_updated`.
//!
//! Every field is checked strictly ([`BrandingRequest::parse`]): a display name of 1 to
//! [`MAX_DISPLAY_NAME`] characters, an `https://` logo URL, an accent colour `#rrggbb`, and at
//! most [`MAX_FRAME_ANCESTORS`] origins allowed to frame the portal (`https://host[:port]`;
//! `http://` only under the local-development policy). None are allowed by default.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::urls;
use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::input::time::rfc3339;
use crate::openapi::formats::{HttpsUrlFormat, NameFormat, OriginFormat};
use crate::state::AppState;
use crate::store::{Branding, BrandingUpdate, StoreError};

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = crate::limits::MAX_NAME_CHARS;
/// The most origins allowed to frame the portal.
pub const MAX_FRAME_ANCESTORS: usize = 10;

/// An organization's branding, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BrandingView {
    /// The name shown (by default the organization's name).
    pub display_name: String,
    /// The logo's `https://` URL, if set.
    pub logo_url: Option<String>,
    /// The accent colour, `#rrggbb`, if set.
    pub accent_color: Option<String>,
    /// The origins allowed to frame the portal (none by default).
    pub frame_ancestors: Vec<String>,
    /// When it was last changed (RFC 3339); none while the defaults apply.
    pub updated_at: Option<String>,
}

impl From<Branding> for BrandingView {
    fn from(branding: Branding) -> Self {
        BrandingView {
            display_name: branding.display_name,
            logo_url: branding.logo_url,
            accent_color: branding.accent_color,
            frame_ancestors: branding.frame_ancestors,
            updated_at: branding.updated_at.map(rfc3339),
        }
    }
}

/// Body of `PUT /v1/organization/branding`: the whole branding (a field left out is unset).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingRequest {
    /// 1 to 100 characters, no control characters (trimmed).
    #[schema(value_type = NameFormat)]
    pub display_name: String,
    /// An `https://` URL of the logo, or none.
    #[schema(value_type = Option<HttpsUrlFormat>)]
    pub logo_url: Option<String>,
    /// `#rrggbb`, or none.
    #[schema(pattern = r"^#[0-9A-Fa-f]{6}$")]
    pub accent_color: Option<String>,
    /// At most 10 origins (`https://host[:port]`) allowed to embed the portal in a frame
    /// (repeats are taken once).
    #[serde(default)]
    #[schema(value_type = Option<Vec<OriginFormat>>, max_items = 10)]
    pub frame_ancestors: Option<Vec<String>>,
}

impl BrandingRequest {
    /// Checks every field; the message of the first one refused.
    pub fn parse(self, local_dev: bool) -> Result<BrandingUpdate, String> {
        let display_name = self.display_name.trim().to_owned();
        let length = display_name.chars().count();
        if length == 0 || length > MAX_DISPLAY_NAME {
            return Err(format!(
                "display_name must be 1 to {MAX_DISPLAY_NAME} characters"
            ));
        }
        if display_name.chars().any(char::is_control) {
            return Err("display_name must not contain control characters".into());
        }
        let logo_url = self
            .logo_url
            .map(|url| urls::web_url(&url, false, "logo_url"))
            .transpose()
            .map_err(|error| error.to_string())?;
        let accent_color = self.accent_color.map(accent_color).transpose()?;
        let asked = self.frame_ancestors.unwrap_or_default();
        if asked.len() > MAX_FRAME_ANCESTORS {
            return Err(format!(
                "frame_ancestors lists at most {MAX_FRAME_ANCESTORS} origins"
            ));
        }
        let mut frame_ancestors: Vec<String> = Vec::with_capacity(asked.len());
        for origin in &asked {
            let origin = urls::origin(origin, local_dev, "each of frame_ancestors")
                .map_err(|error| error.to_string())?;
            if !frame_ancestors.contains(&origin) {
                frame_ancestors.push(origin);
            }
        }
        Ok(BrandingUpdate {
            display_name,
            logo_url,
            accent_color,
            frame_ancestors,
        })
    }
}

/// `#rrggbb` (hex digits, any case), in lowercase.
fn accent_color(text: String) -> Result<String, String> {
    let valid = text.len() == 7
        && text.starts_with('#')
        && text.bytes().skip(1).all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("accent_color must be #rrggbb (six hex digits)".into())
    }
}

fn from_store(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound("organization"),
        other => other.into(),
    }
}

/// Your organization's branding (the defaults until someone sets it).
#[utoipa::path(
    get, path = "/v1/organization/branding", tag = "portal",
    responses((status = 200, description = "The branding", body = BrandingView)),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn get_branding(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<BrandingView>, ApiError> {
    principal.require(Permission::Read)?;
    let branding = state
        .store
        .branding(principal.org)
        .await
        .map_err(from_store)?;
    Ok(Json(branding.into()))
}

/// Set your organization's branding (owners, admins, or a management key with `admin:full`).
#[utoipa::path(
    put, path = "/v1/organization/branding", tag = "portal",
    request_body = BrandingRequest,
    responses(
        (status = 200, description = "The branding as stored", body = BrandingView),
        (status = 400, description = "A field is invalid (the message says which and why)", body = crate::openapi::ErrorResponse),
        (status = 403, description = "Your role may not change the organization's branding", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn put_branding(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<BrandingRequest>,
) -> Result<Json<BrandingView>, ApiError> {
    principal.require(Permission::ManageMembers)?;
    let update = body
        .parse(state.policy.local_dev)
        .map_err(ApiError::InvalidRequest)?;
    let branding = state
        .store
        .put_branding(principal.org, update, &principal.context, state.now())
        .await
        .map_err(from_store)?;
    Ok(Json(branding.into()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::openapi::patterns::{name_pattern, property_config, strings};

    proptest! {
        #![proptest_config(property_config())]

        #[test]
        fn every_display_name_of_the_documents_pattern_is_taken(
            text in strings(&name_pattern())
        ) {
            prop_assume!(text.chars().count() <= MAX_DISPLAY_NAME);
            prop_assert!(request(&text).parse(false).is_ok(), "{text:?}");
        }
    }

    fn request(display_name: &str) -> BrandingRequest {
        BrandingRequest {
            display_name: display_name.into(),
            logo_url: None,
            accent_color: None,
            frame_ancestors: None,
        }
    }

    #[test]
    fn a_display_name_is_trimmed_and_bounded() {
        assert_eq!(
            request("  Acme  ").parse(false).map(|b| b.display_name),
            Ok("Acme".to_owned())
        );
        assert!(request("   ").parse(false).is_err());
        assert!(request(&"é".repeat(100)).parse(false).is_ok());
        assert!(request(&"é".repeat(101)).parse(false).is_err());
        assert!(request("a\u{7}b").parse(false).is_err());
    }

    #[test]
    fn accent_colours_are_six_hex_digits_stored_lowercase() {
        let mut body = request("Acme");
        body.accent_color = Some("#A1B2C3".into());
        assert_eq!(
            body.parse(false).map(|b| b.accent_color),
            Ok(Some("#a1b2c3".to_owned()))
        );
        for bad in ["a1b2c3", "#a1b2c", "#a1b2c3d", "#g1b2c3", "red", ""] {
            let mut body = request("Acme");
            body.accent_color = Some(bad.into());
            assert!(body.parse(true).is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_ancestors_are_at_most_ten_origins_deduplicated() {
        let mut body = request("Acme");
        body.frame_ancestors = Some(vec![
            "https://app.example.com".into(),
            "https://APP.example.com".into(),
        ]);
        assert_eq!(
            body.parse(false).map(|b| b.frame_ancestors),
            Ok(vec!["https://app.example.com".to_owned()])
        );
        let mut body = request("Acme");
        body.frame_ancestors = Some(
            (0..11)
                .map(|n| format!("https://app{n}.example.com"))
                .collect(),
        );
        assert!(body.parse(false).is_err());
    }

    #[test]
    fn a_logo_must_be_https_even_in_local_development() {
        let mut body = request("Acme");
        body.logo_url = Some("http://localhost/logo.png".into());
        assert!(body.parse(true).is_err());
        let mut body = request("Acme");
        body.logo_url = Some("https://cdn.example.com/logo.png".into());
        assert!(body.parse(false).is_ok());
    }
}
