//! The frame every dashboard page is drawn in, and the pages drawn when something goes wrong.
//!
//! - [`signed_in`]: header (organization, navigation, the person, "Sign out"), a skip link, and
//!   `<main>` holding the page's `<h1>` and content.
//! - [`public`]: the same frame without navigation (sign-in, invitations, portal entry).
//! - [`PageError`]: a refused or failed request as a page (never the API's JSON), or a
//!   redirect to sign-in when there is no valid session.
//!
//! Every response carries `Cache-Control: no-store` (pages show keys and audit trails) and, when
//! the organization allows framing, the [`FrameAncestors`] the security layer turns into
//! `frame-ancestors`.

use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::viewer::{Look, Viewer};
use crate::access::Permission;
use crate::error::ApiError;

/// Origins allowed to frame a response (the security layer reads it).
#[derive(Debug, Clone, Default)]
pub struct FrameAncestors(pub Vec<String>);

/// A page's navigation entry, to mark the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// API keys.
    Keys,
    /// The audit log.
    Audit,
    /// Members and roles.
    Members,
    /// Edges (operators).
    Edges,
    /// The person's own account.
    Account,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Keyplane" }
            link rel="stylesheet" href="/assets/dashboard.css";
            link rel="stylesheet" href="/brand.css";
            script src="/assets/dashboard.js" defer {}
        }
    }
}

/// A page for a signed-in person.
pub fn signed_in(viewer: &Viewer, section: Section, title: &str, content: Markup) -> Response {
    signed_in_with(viewer, section, title, content, None)
}

/// A page for a signed-in person whose `<body>` carries `data-*` attributes for the script
/// (the copy-once view's address to show instead of the form's).
pub fn signed_in_with(
    viewer: &Viewer,
    section: Section,
    title: &str,
    content: Markup,
    replace_url: Option<&str>,
) -> Response {
    let access = &viewer.principal.access;
    let nav = [
        (Section::Keys, "/keys", "API keys", true),
        (
            Section::Audit,
            "/audit",
            "Audit log",
            access.may(Permission::Read) && !viewer.portal,
        ),
        (Section::Members, "/members", "Members", !viewer.portal),
        (
            Section::Edges,
            "/edges",
            "Edges",
            access.operator && !viewer.portal,
        ),
        (Section::Account, "/account", "Account", !viewer.portal),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-replace-url=[replace_url] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    (brand(&viewer.look))
                    nav aria-label="Main" {
                        ul {
                            @for (entry, href, label, shown) in nav {
                                @if shown {
                                    li {
                                        a href=(href) aria-current=[(entry == section).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { (viewer.name()) }
                        @if let Some(url) = &viewer.return_url {
                            a href=(url) { "Back to " (viewer.look.org_name) }
                        }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    let mut response = finish(StatusCode::OK, markup);
    if viewer.portal && !viewer.look.frame_ancestors.is_empty() {
        response
            .extensions_mut()
            .insert(FrameAncestors(viewer.look.frame_ancestors.clone()));
    }
    response
}

fn brand(look: &Look) -> Markup {
    html! {
        a.brand href="/keys" {
            @if let Some(logo) = &look.logo_url {
                img src=(logo) alt="" width="24" height="24";
            }
            span { (look.org_name) }
        }
    }
}

/// A page for someone not signed in.
pub fn public(status: StatusCode, title: &str, content: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.public {
                main id="main" tabindex="-1" {
                    p.brand-plain { "Keyplane" }
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    finish(status, markup)
}

fn finish(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `303 See Other` to `to` (after a form post).
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error message box, announced to screen readers.
pub fn problem(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            div.problem role="alert" { p { (message) } }
        }
    }
}

/// A confirmation box after a redirect.
pub fn notice(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            div.notice role="status" { p { (message) } }
        }
    }
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

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

/// Non-breaking text for an absent value.
pub fn dash() -> Markup {
    html! { span.muted { (PreEscaped("&mdash;")) } }
}
