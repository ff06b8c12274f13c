//! Webhooks: each organization's endpoints, and the events Keyplane posts to them by the
//! Standard Webhooks convention.
//!
//! - [`api`]: `/v1/webhooks` — endpoints, their signing secrets (shown once), attempts and
//!   redelivery; [`views`]: what it answers.
//! - [`delivery`]: the worker that sends what the outbox holds ([`crate::store::outbox`]:
//!   events are written in the transaction of the change that causes them), with
//!   [`backoff`]'s retries for 24 hours and an endpoint disabled after 5 days of failures.
//! - the signing secrets, derived from the deployment's signing secret and never stored, and
//!   the `webhook-signature` header: [`crate::secrets::webhook_signing`].
//! - [`expiry`]: the scheduler that announces `key.expiring` and `key.expired`;
//!   [`expiry_notices`]: how many days before an expiry each organization is told.
//! - [`address_guard`]: deliveries reach public addresses only (checked on the address
//!   connected to), unless the local-development switch allows otherwise.
//! - [`history`]: the cleanup that deletes attempts, settled deliveries and their events after
//!   30 days.

pub mod address_guard;
pub mod api;
pub mod backoff;
pub mod delivery;
pub mod expiry;
pub mod expiry_notices;
pub mod history;
pub mod views;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::create_webhook, api::list_webhooks))
        .routes(routes!(
            api::get_webhook,
            api::update_webhook,
            api::delete_webhook
        ))
        .routes(routes!(api::rotate_secret))
        .routes(routes!(api::list_attempts))
        .routes(routes!(api::redeliver))
        .routes(routes!(
            expiry_notices::get_expiry_notices,
            expiry_notices::put_expiry_notices
        ))
}
