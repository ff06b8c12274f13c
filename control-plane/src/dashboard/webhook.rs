//! `/webhooks/{id}`: one webhook endpoint — its settings (URL, description, events) to change,
//! its delivery attempts, newest first, each event sent again on request, and turning it off
//! and on, a new signing secret (shown once; the old one signs for 24 hours more), and
//! deleting it after a confirmation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::entry::Empty;
use super::failure::{PagePath, PageQuery};
use super::format::{self, link};
use super::page::{self, Done, PageError, Section, csrf_field, dash, notice, problem, see_other};
use super::viewer::{Submitted, Viewer};
use super::webhooks::{event_boxes, reveal, state_words};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::webhooks::api::UpdateWebhookRequest;
use crate::webhooks::views::{AttemptPage, AttemptQuery, AttemptView, WebhookView};

/// Attempts per page.
pub const ATTEMPTS_PER_PAGE: u32 = 20;

/// The page's query: a confirmation, or where the attempts page starts.
#[derive(Debug, Default, Deserialize)]
pub struct EndpointQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    cursor: String,
}

async fn endpoint(state: &AppState, viewer: &Viewer, id: &str) -> Result<WebhookView, PageError> {
    let axum::Json(view) = crate::webhooks::api::get_webhook(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.to_owned()),
    )
    .await?;
    Ok(view)
}

async fn attempts(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    cursor: &str,
) -> Result<AttemptPage, PageError> {
    let query = AttemptQuery {
        limit: Some(ATTEMPTS_PER_PAGE),
        cursor: (!cursor.is_empty()).then(|| cursor.to_owned()),
    };
    let axum::Json(page) = crate::webhooks::api::list_attempts(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.to_owned()),
        ApiQuery(query),
    )
    .await?;
    Ok(page)
}

/// `GET /webhooks/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<EndpointQuery>,
) -> Result<Response, PageError> {
    let done = Done { done: query.done }.message(&[
        ("saved", "Changes saved."),
        ("enabled", "Endpoint enabled: deliveries resume."),
        (
            "disabled",
            "Endpoint disabled: nothing is sent until it is enabled again.",
        ),
        ("redelivered", "The event is sent again within a second."),
    ]);
    render(
        &state,
        &viewer,
        &id,
        &query.cursor,
        None,
        done,
        StatusCode::OK,
    )
    .await
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    cursor: &str,
    refused: Option<(&SettingsForm, String)>,
    done: Option<&str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let view = endpoint(state, viewer, id).await?;
    let attempts = attempts(state, viewer, id, cursor).await?;
    let base = format!("/webhooks/{}", view.id);
    let (url, description, events) = match &refused {
        Some((form, _)) => (&form.url, &form.description, &form.events),
        None => (&view.url, &view.description, &view.events),
    };
    let content = html! {
        (notice(done))
        @if let Some((_, message)) = &refused { (problem(Some(message))) }
        p { "State: " strong { (state_words(&view)) } }
        @if let Some(until) = &view.previous_secret_expires_at {
            p { "The previous signing secret also signs until " time datetime=(until) { (format::absolute(until)) } "." }
        }
        div.actions {
            form method="post" action={(base) "/enabled"} {
                (csrf_field(viewer))
                @if view.enabled {
                    input type="hidden" name="enabled" value="false";
                    button.secondary type="submit" { "Disable" }
                } @else {
                    input type="hidden" name="enabled" value="true";
                    button type="submit" { "Enable" }
                }
            }
            form method="post" action={(base) "/rotate-secret"} {
                (csrf_field(viewer))
                button.secondary type="submit" { "New signing secret" }
            }
            a href={(base) "/delete"} { "Delete endpoint" }
        }
        h2 { "Delivery attempts" }
        (attempt_table(viewer, &base, &attempts.items, view.enabled))
        @if let Some(next) = &attempts.next_cursor {
            p { a href=(link(&base, &[("cursor", next)])) { "Older attempts" } }
        }
        @if !cursor.is_empty() {
            p { a href=(base) { "Newest attempts" } }
        }
        h2 { "Settings" }
        form method="post" action=(base) {
            (csrf_field(viewer))
            label for="webhook-url" { "Endpoint URL" }
            input id="webhook-url" name="url" type="url" required value=(url) autocomplete="off";
            label for="webhook-description" { "Description (optional)" }
            input id="webhook-description" name="description" type="text" maxlength="200" value=(description);
            (event_boxes(events))
            div.actions { button type="submit" { "Save changes" } }
        }
    };
    let mut response = page::signed_in(viewer, Section::Webhooks, &view.url, content);
    *response.status_mut() = status;
    Ok(response)
}

/// The attempts, each with "Send again" while the endpoint is enabled (`resendable`).
fn attempt_table(viewer: &Viewer, base: &str, items: &[AttemptView], resendable: bool) -> Markup {
    html! {
        @if items.is_empty() {
            p { "Nothing was sent yet." }
        } @else {
            table {
                caption.visually-hidden { "Delivery attempts, newest first" }
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Attempt" }
                    th scope="col" { "Outcome" } th scope="col" { "Answer" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for item in items {
                        tr {
                            td { (format::absolute(&item.at)) }
                            td { code { (item.event_type) } br; span.muted { (item.event_id) } }
                            td { (item.attempt) }
                            td {
                                (item.outcome.replace('_', " "))
                                @if let Some(status) = item.status { " (" (status) ")" }
                                " in " (item.duration_ms) " ms"
                            }
                            td.answer { @if item.response.is_empty() { (dash()) } @else { code { (item.response) } } }
                            td {
                                @if resendable {
                                    form method="post" action={(base) "/events/" (item.event_id) "/redeliver"} {
                                        (csrf_field(viewer))
                                        button.secondary type="submit" { "Send again" span.visually-hidden { " " (item.event_type) " " (item.event_id) } }
                                    }
                                } @else {
                                    "Enable the endpoint to send again"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The settings form.
#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    events: Vec<String>,
}

async fn update(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    changes: UpdateWebhookRequest,
) -> Result<(), ApiError> {
    crate::webhooks::api::update_webhook(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.to_owned()),
        ApiJson(changes),
    )
    .await
    .map(|_| ())
}

/// `POST /webhooks/{id}`: new settings.
pub async fn save(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<SettingsForm>,
) -> Result<Response, PageError> {
    let changes = UpdateWebhookRequest {
        url: Some(form.url.trim().to_owned()),
        events: Some(form.events.clone()),
        description: Some(form.description.trim().to_owned()),
        enabled: None,
    };
    match update(&state, &viewer, &id, changes).await {
        Ok(()) => Ok(see_other(&format!("/webhooks/{id}?done=saved"))),
        Err(error @ ApiError::InvalidRequest(_)) => {
            let message = error.to_string();
            let refused = Some((&form, message));
            render(
                &state,
                &viewer,
                &id,
                "",
                refused,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

/// The enable/disable form.
#[derive(Debug, Deserialize)]
pub struct EnabledForm {
    enabled: bool,
}

/// `POST /webhooks/{id}/enabled`.
pub async fn set_enabled(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<EnabledForm>,
) -> Result<Response, PageError> {
    let changes = UpdateWebhookRequest {
        enabled: Some(form.enabled),
        ..UpdateWebhookRequest::default()
    };
    update(&state, &viewer, &id, changes).await?;
    let done = if form.enabled { "enabled" } else { "disabled" };
    Ok(see_other(&format!("/webhooks/{id}?done={done}")))
}

/// `POST /webhooks/{id}/rotate-secret`: the new secret, once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, PageError> {
    let axum::Json(made) = crate::webhooks::api::rotate_secret(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
    )
    .await?;
    Ok(reveal(&viewer, &made, "New signing secret"))
}

/// `POST /webhooks/{id}/events/{event_id}/redeliver`.
pub async fn redeliver(
    State(state): State<AppState>,
    PagePath((id, event)): PagePath<(String, String)>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, PageError> {
    crate::webhooks::api::redeliver(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath((id.clone(), event)),
    )
    .await?;
    Ok(see_other(&format!("/webhooks/{id}?done=redelivered")))
}

/// `GET /webhooks/{id}/delete`: the confirmation.
pub async fn delete_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let view = endpoint(&state, &viewer, &id).await?;
    let content = html! {
        p { "Nothing more is sent to " strong { (view.url) } "; what was not delivered yet is dropped. Its attempts are deleted with it." }
        form method="post" action={"/webhooks/" (view.id) "/delete"} {
            (csrf_field(&viewer))
            div.actions {
                button.danger type="submit" { "Delete endpoint" }
                a href={"/webhooks/" (view.id)} { "Cancel" }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Webhooks,
        &format!("Delete {}", view.url),
        content,
    ))
}

/// `POST /webhooks/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, PageError> {
    crate::webhooks::api::delete_webhook(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
    )
    .await?;
    Ok(see_other("/webhooks?done=deleted"))
}
