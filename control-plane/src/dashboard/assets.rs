//! The dashboard's stylesheet and script, compiled into the binary (a fresh machine needs no
//! front-end build), and the organization's accent colour as a stylesheet of its own (the
//! policy forbids inline styles).

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::state::AppState;

const STYLESHEET: &str = include_str!("assets/dashboard.css");
const SCRIPT: &str = include_str!("assets/dashboard.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    (headers, body).into_response()
}

/// `GET /assets/dashboard.css`.
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// `GET /assets/dashboard.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /brand.css`: the signed-in organization's accent colour (empty without one, or
/// without a session).
pub async fn brand(
    State(state): State<AppState>,
    principal: Result<Principal, crate::error::ApiError>,
) -> Response {
    let mut css = String::new();
    if let Ok(principal) = principal
        && let Ok(look) = super::viewer::look_of(&state, &principal).await
        && let Some(accent) = look.accent
        && is_hex_colour(&accent)
    {
        css = format!(":root {{ --accent: {accent}; }}\n");
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    (headers, css).into_response()
}

/// `#rrggbb`: the only form that reaches a stylesheet.
fn is_hex_colour(text: &str) -> bool {
    text.len() == 7
        && text.starts_with('#')
        && text[1..].bytes().all(|byte| byte.is_ascii_hexdigit())
}
