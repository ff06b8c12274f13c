//! The bare frame of every dashboard answer: the document head (stylesheets, the one script),
//! the page for someone not signed in, redirects, message boxes, and the extension the security
//! layer reads to allow framing. Every answer is `Cache-Control: no-store`.

use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Origins allowed to frame a response (the security layer reads it).
#[derive(Debug, Clone, Default)]
pub struct FrameAncestors(pub Vec<String>);

/// The document head.
pub fn head(title: &str) -> Markup {
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

/// `markup` as the answer, with `Cache-Control: no-store`.
pub fn finish(status: StatusCode, markup: Markup) -> Response {
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

/// Non-breaking text for an absent value.
pub fn dash() -> Markup {
    html! { span.muted { (PreEscaped("&mdash;")) } }
}
