//! The bare frame of every dashboard answer: the document head (stylesheets, the one script),
//! the page for someone not signed in, the form one-time links post their fragment's token
//! with, redirects and message boxes. Every answer is `Cache-Control: no-store`.

use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

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

/// A 303 to `to` carrying the cookies an API answer set (sign-in, sign-out, joining).
pub fn see_other_keeping_cookies(answer: &Response, to: &str) -> Response {
    keeping_cookies(answer, see_other(to))
}

/// `response` carrying the cookies an API answer set as well.
pub fn keeping_cookies(answer: &Response, mut response: Response) -> Response {
    for cookie in answer.headers().get_all(SET_COOKIE) {
        response.headers_mut().append(SET_COOKIE, cookie.clone());
    }
    response
}

/// The form a one-time link's page posts its token with: the script moves the token from the
/// URL fragment (never sent to a server) into the field and submits; without the script, the
/// token can be pasted. `missing` is shown when the link carries none.
pub fn fragment_token_form(action: &str, label: &str, missing: &str) -> Markup {
    html! {
        p id="token-missing" hidden { (missing) }
        form method="post" action=(action) data-autosubmit {
            label for="token" { (label) }
            input id="token" name="token" type="text" autocomplete="off" required data-from-fragment;
            div.actions { button type="submit" { "Continue" } }
        }
    }
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
