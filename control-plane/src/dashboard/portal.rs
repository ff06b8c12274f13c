//! The portal's way in: `GET /portal/enter#token=…`, the one-time URL a host product's back end
//! got from `POST /v1/portal/sessions`, opened in the host's page (often in a frame).
//!
//! The token is in the fragment (never sent to a server, never logged): the page's script posts
//! it to `POST /portal/enter`, which redeems it once ([`crate::portal::enter`]) and answers with
//! the portal session's cookie (`SameSite=None; Secure; Partitioned`) and a redirect to the API
//! keys. The entry page holds nothing and does nothing but post its own token, so any origin may
//! frame it; every page after it may be framed only by the origins the organization allows.

use axum::Extension;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::failure::PageForm;
use super::frame::{fragment_token_form, public, see_other};
use super::security::FramingSlot;
use super::viewer::posted_from_here;
use crate::auth::Anonymous;
use crate::state::AppState;

/// Any origin may frame the entry page and its refusal (they show nothing).
const ANY_ORIGIN: &str = "*";

/// `GET /portal/enter`.
pub async fn entry_page(Extension(framing): Extension<FramingSlot>) -> Response {
    framing.allow(&[ANY_ORIGIN.to_owned()]);
    public(
        StatusCode::OK,
        "Opening API keys",
        fragment_token_form(
            "/portal/enter",
            "Portal code",
            "This link has no token: open the API keys page again from the product you came from.",
        ),
    )
}

/// The entry form.
#[derive(Debug, Deserialize)]
pub struct EntryForm {
    token: String,
}

/// `POST /portal/enter`: the session, once per link.
pub async fn enter(
    State(state): State<AppState>,
    Extension(framing): Extension<FramingSlot>,
    anonymous: Anonymous,
    uri: OriginalUri,
    PageForm(form): PageForm<EntryForm>,
) -> Response {
    if let Err(refused) = posted_from_here(&state, &anonymous, &uri) {
        return refused.into_response();
    }
    match crate::portal::enter(&state, form.token.trim(), &anonymous).await {
        Ok(entry) => {
            let mut response = see_other("/keys");
            response.headers_mut().insert(SET_COOKIE, entry.set_cookie);
            response
        }
        Err(crate::error::ApiError::InvalidPortalLink) => {
            framing.allow(&[ANY_ORIGIN.to_owned()]);
            public(
                StatusCode::UNAUTHORIZED,
                "This link no longer works",
                html! {
                    p { "A portal link works once, for a few minutes. Open the API keys page again from the product you came from." }
                },
            )
        }
        Err(error) => super::failure::PageError::from(error).into_response(),
    }
}
