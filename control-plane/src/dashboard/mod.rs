//! The web dashboard `keyplane serve` answers at `/`: Settings > API Keys for people, also
//! embedded in host products (the portal).
//!
//! Server-rendered HTML ([maud] templates, escaped by construction), one stylesheet and one
//! small script compiled into the binary ([`assets`]), no front-end build. Every page calls the
//! REST API's own handlers with the viewer's principal ([`viewer`]), so the dashboard can show
//! and do exactly what the API lets that person: the same authorization, validation, audit
//! records and errors. Forms post with the session's CSRF token in a hidden field, checked as
//! the API checks its header.
//!
//! - [`entry`]: sign-in, sign-out, the setup link and invitations.
//! - [`keys`]: the key list, create and the copy-once view, a key's page and its actions.
//! - [`portal`]: the way in from a host product's one-time link.
//! - [`webhooks`], [`webhook`]: the organization's webhook endpoints (added, changed, their
//!   attempts, events sent again) and its expiry reminders.
//! - [`audit`], [`members`], [`account`]: the organization's and the person's other pages;
//!   [`operator`]: the deployment-wide pages (edges, organizations), for operators only.
//! - [`page`]: the frame of a signed-in page ([`frame`]: the bare frame, [`failure`]: error
//!   pages); [`security`]: the headers every answer carries
//!   (a strict Content-Security-Policy, framing rules); [`mod@format`]: times in words.

pub mod account;
pub mod assets;
pub mod audit;
pub mod entry;
pub mod failure;
pub mod format;
pub mod frame;
pub mod keys;
pub mod members;
pub mod operator;
pub mod page;
pub mod portal;
pub mod security;
pub mod viewer;
pub mod webhook;
pub mod webhooks;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::state::AppState;

/// The dashboard's routes, with their security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(entry::root))
        .route("/sign-in", get(entry::sign_in_form).post(entry::sign_in))
        .route("/sign-out", post(entry::sign_out))
        .route(
            "/invitation",
            get(entry::invitation_link).post(entry::accept),
        )
        .route("/invitation/open", post(entry::open_invitation))
        .route("/keys", get(keys::list::page))
        .route(
            "/keys/new",
            get(keys::create::form).post(keys::create::create),
        )
        .route("/keys/{id}", get(keys::detail::page))
        .route(
            "/keys/{id}/edit",
            get(keys::actions::edit_form).post(keys::actions::edit),
        )
        .route(
            "/keys/{id}/regenerate",
            get(keys::actions::regenerate_form).post(keys::actions::regenerate),
        )
        .route(
            "/keys/{id}/revoke",
            get(keys::actions::revoke_form).post(keys::actions::revoke),
        )
        .route(
            "/keys/{id}/delete",
            get(keys::actions::delete_form).post(keys::actions::delete),
        )
        .route("/audit", get(audit::page))
        .route("/members", get(members::page))
        .route("/members/invite", post(members::invite))
        .route("/members/{id}/role", post(members::change_role))
        .route(
            "/members/invitations/{id}/revoke",
            post(members::revoke_invitation),
        )
        .route(
            "/members/{id}/remove",
            get(members::remove_form).post(members::remove),
        )
        .route("/webhooks", get(webhooks::page).post(webhooks::add))
        .route(
            "/webhooks/expiry-notices",
            post(webhooks::save_expiry_notices),
        )
        .route("/webhooks/{id}", get(webhook::page).post(webhook::save))
        .route("/webhooks/{id}/enabled", post(webhook::set_enabled))
        .route("/webhooks/{id}/rotate-secret", post(webhook::rotate_secret))
        .route(
            "/webhooks/{id}/events/{event_id}/redeliver",
            post(webhook::redeliver),
        )
        .route(
            "/webhooks/{id}/delete",
            get(webhook::delete_form).post(webhook::delete),
        )
        .route("/edges", get(operator::page))
        .route("/organizations", get(operator::organizations))
        .route("/account", get(account::page))
        .route("/account/password", post(account::change_password))
        .route("/account/sessions/{id}/end", post(account::end_session))
        .route(
            "/account/sign-out-everywhere",
            post(account::sign_out_everywhere),
        )
        .route("/portal/enter", get(portal::entry_page).post(portal::enter))
        .route("/assets/dashboard.css", get(assets::stylesheet))
        .route("/assets/dashboard.js", get(assets::script))
        .route("/brand.css", get(assets::brand))
        .layer(middleware::from_fn(failure::ended_portal_sessions))
        .layer(middleware::from_fn(security::headers))
}
