//! Why a dashboard page could not be shown, as the page to show instead: never the API's JSON,
//! and a redirect to sign-in when there is no valid session.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::frame::{public, see_other};
use crate::error::ApiError;

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// No valid session: sign in first.
    SignIn,
    /// A portal session that ended: the host product must hand out a new link.
    PortalEnded,
    /// The form's fields could not be read.
    BadForm(String),
    /// The API refused or failed.
    Api(ApiError),
}

impl PageError {
    /// An authentication failure of a page request, as the page to show.
    pub fn from_auth(error: ApiError, portal: bool) -> Self {
        match error {
            ApiError::InvalidSession if portal => PageError::PortalEnded,
            ApiError::InvalidSession => PageError::SignIn,
            other => PageError::Api(other),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidSession => PageError::SignIn,
            other => PageError::Api(other),
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        PageError::Api(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => see_other("/sign-in"),
            PageError::PortalEnded => public(
                StatusCode::UNAUTHORIZED,
                "This session has ended",
                html! { p { "Open the API keys page again from the product you came from." } },
            ),
            PageError::BadForm(message) => public(
                StatusCode::BAD_REQUEST,
                "That form could not be read",
                html! { p { (message) } p { a href="/keys" { "Back to API keys" } } },
            ),
            PageError::Api(error) => {
                let status = error.status();
                match &error {
                    ApiError::Internal(cause) => {
                        tracing::error!(cause = %format!("{cause:#}"), "dashboard page failed");
                    }
                    ApiError::Unavailable(cause) => {
                        tracing::error!(cause = %crate::error::error_chain(cause), "dashboard page failed");
                    }
                    _ => {}
                }
                let (title, advice) = match &error {
                    ApiError::CsrfFailed => (
                        "This form has expired",
                        "Reload the page and submit it again.",
                    ),
                    ApiError::Forbidden(_)
                    | ApiError::NotKeyOwner
                    | ApiError::InsufficientScope(_) => {
                        ("Not allowed", "Your role does not allow this.")
                    }
                    ApiError::NotFound(_) => ("Not found", "It may have been deleted."),
                    ApiError::Unavailable(_) => (
                        "Temporarily unavailable",
                        "The database cannot be reached; try again in a moment.",
                    ),
                    _ => ("Something went wrong", "Nothing was changed."),
                };
                public(
                    status,
                    title,
                    html! {
                        p { (error.to_string()) }
                        p { (advice) " " a href="/keys" { "Back to API keys" } }
                    },
                )
            }
        }
    }
}
