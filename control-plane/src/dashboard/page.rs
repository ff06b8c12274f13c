//! The frame every dashboard page is drawn in, and the pages drawn when something goes wrong.
//!
//! - [`signed_in`]: header (organization, navigation, the person, "Sign out"), a skip link, and
//!   `<main>` holding the page's `<h1>` and content.
//! - [`public`] (from [`super::frame`]): the same frame without navigation (sign-in,
//!   invitations, portal entry); [`PageError`] (from [`super::failure`]): a refused or failed
//!   request as a page.
//!
//! Every response carries `Cache-Control: no-store` (pages show keys and audit trails); which
//! origins may frame a portal page is settled by [`super::security`].

use axum::http::StatusCode;
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

pub use super::failure::PageError;
pub use super::frame::{dash, notice, problem, public, see_other};
use super::frame::{finish, head};
use super::viewer::{Look, Viewer};
use crate::access::Permission;

/// A page's navigation entry, to mark the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// API keys.
    Keys,
    /// The audit log.
    Audit,
    /// Members and roles.
    Members,
    /// Webhook endpoints and expiry reminders.
    Webhooks,
    /// Edges (operators).
    Edges,
    /// The person's own account.
    Account,
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
            Section::Webhooks,
            "/webhooks",
            "Webhooks",
            access.may(Permission::ManageMembers) && !viewer.portal,
        ),
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
                            a href=(url) target="_top" { "Back to " (viewer.look.org_name) }
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
    finish(StatusCode::OK, markup)
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

/// A page's query after a change redirected to it: `?done=<what>`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    /// What was done.
    #[serde(default)]
    pub done: String,
}

impl Done {
    /// The confirmation for what was done, from `messages` (`(done, message)`); none for an
    /// unknown or absent value.
    pub fn message(&self, messages: &[(&str, &'static str)]) -> Option<&'static str> {
        messages
            .iter()
            .find(|(done, _)| *done == self.done)
            .map(|(_, message)| *message)
    }
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}
