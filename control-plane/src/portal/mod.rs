//! The embedded portal: what a host product needs to show Keyplane's pages inside its own.
//!
//! - [`links`]: `POST /v1/portal/sessions`, where the host product's back end (its signed
//!   token, or a management key) asks for a one-time link for one of its users.
//! - [`entry`]: [`enter`], which the dashboard calls when that person lands on
//!   `/portal/enter`: the link is used up and a portal session (`SameSite=None; Secure;
//!   Partitioned` cookie) starts.
//! - [`branding`]: each organization's name, logo, accent colour and the origins allowed to
//!   frame the portal (`GET`/`PUT /v1/organization/branding`); the dashboard reads it with
//!   [`crate::store::PortalStore::branding`].
//! - [`reach`]: the pure rule for which roles a caller may hand out in a portal link.
//! - [`urls`]: the strict checks on the URLs and origins this module accepts.

pub mod branding;
pub mod entry;
pub mod links;
pub mod reach;
pub mod urls;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use branding::BrandingView;
pub use entry::{PortalEntry, enter};
pub use links::LINK_MINUTES;

use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(links::create_link))
        .routes(routes!(branding::get_branding, branding::put_branding))
}
