//! Why a dashboard page could not be shown, as the page to show instead: never the API's JSON
//! nor the framework's plain text, and a redirect to sign-in when there is no valid session
//! (in the embedded portal, "This session has ended": [`ended_portal_sessions`]); and the
//! extractors of a page's path, query and public forms ([`PagePath`], [`PageQuery`],
//! [`PageForm`]), whose refusals are such pages.

use axum::extract::Request;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::frame::{public, see_other};
use crate::auth::session;
use crate::error::ApiError;
use crate::store::SessionKind;

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

impl From<PathRejection> for PageError {
    /// As the API answers it: a segment that is not UTF-8 once decoded names nothing (404).
    fn from(rejection: PathRejection) -> Self {
        PageError::Api(rejection.into())
    }
}

/// A page's path parameters; a malformed one gets the dashboard's "Not found" page, not the
/// framework's plain-text 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(PageError))]
pub struct PagePath<T>(pub T);

impl From<QueryRejection> for PageError {
    /// As the API answers it: 400, naming what could not be read.
    fn from(rejection: QueryRejection) -> Self {
        PageError::Api(rejection.into())
    }
}

/// A page's query string; one that cannot be read (a field given twice, say) gets the
/// dashboard's error page, not the framework's plain-text 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

impl From<FormRejection> for PageError {
    fn from(rejection: FormRejection) -> Self {
        PageError::BadForm(rejection.body_text())
    }
}

/// The fields of a form posted without a session (sign-in, an invitation, a portal link); one
/// that cannot be read gets the dashboard's "That form could not be read" page.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Form), rejection(PageError))]
pub struct PageForm<T>(pub T);

impl From<crate::store::StoreError> for PageError {
    /// As the API answers it; a person removed from the organization during the call (their
    /// sessions there ended) is sent to sign in.
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

/// Marks the redirect to sign-in ([`PageError::SignIn`]), for [`ended_portal_sessions`].
#[derive(Debug, Clone, Copy)]
struct SignInSent;

/// Middleware: a page request made with a portal session that is sent to sign in (its session
/// ended, found by the page's handler: the person was removed while the call waited) gets the
/// portal's "This session has ended" page instead, as the portal's authentication answers: a
/// frame inside a host product has no Keyplane sign-in to go to.
pub async fn ended_portal_sessions(request: Request, next: Next) -> Response {
    let portal = session::presented(request.headers())
        .is_some_and(|cookie| cookie.kind == SessionKind::Portal);
    let response = next.run(request).await;
    if portal && response.extensions().get::<SignInSent>().is_some() {
        return PageError::PortalEnded.into_response();
    }
    response
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => {
                let mut redirect = see_other("/sign-in");
                redirect.extensions_mut().insert(SignInSent);
                redirect
            }
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, header};
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;

    /// A page whose handler finds the session over after authentication (a member removed
    /// while the call waited), asked for with `cookie`.
    async fn ended_during_the_call(cookie: &str) -> Response {
        let app = Router::new()
            .route(
                "/keys/new",
                post(|| async {
                    PageError::from(crate::store::StoreError::CallerEnded(
                        crate::store::CallerEnded::Removed,
                    ))
                }),
            )
            .layer(axum::middleware::from_fn(ended_portal_sessions));
        let request = Request::post("/keys/new")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("request");
        app.oneshot(request).await.expect("answer")
    }

    #[tokio::test]
    async fn a_session_ended_during_the_call_is_sent_where_its_kind_signs_in_again() {
        let dashboard =
            ended_during_the_call(&format!("{}=token", session::DASHBOARD_COOKIE)).await;
        assert_eq!(dashboard.status(), StatusCode::SEE_OTHER);
        assert_eq!(dashboard.headers()[header::LOCATION], "/sign-in");
        let portal = ended_during_the_call(&format!("{}=token", session::PORTAL_COOKIE)).await;
        assert_eq!(portal.status(), StatusCode::UNAUTHORIZED);
    }
}
