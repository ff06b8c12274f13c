//! `/webhooks`: the organization's webhook endpoints and its expiry reminders, for those who
//! manage the organization (owners, admins): the endpoints with their state, adding one (its
//! signing secret shown once, like a new key), and how many days before a key's expiry
//! `key.expiring` is sent. One endpoint's page, attempts and actions: [`super::webhook`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::failure::PageQuery;
use super::format;
use super::page::{self, Done, PageError, Section, csrf_field, notice, problem, see_other};
use super::viewer::{Submitted, Viewer};
use crate::access::Permission;
use crate::accounts::once::SpentForms;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::store::outbox::EventType;
use crate::webhooks::api::CreateWebhookRequest;
use crate::webhooks::expiry_notices::{ExpiryNoticesRequest, ExpiryNoticesView};
use crate::webhooks::views::{WebhookView, WebhookWithSecret};

/// What each event is, in words, for the checkboxes.
pub fn event_label(kind: EventType) -> &'static str {
    match kind {
        EventType::KeyCreated => "a key is created",
        EventType::KeyUpdated => "a key is changed",
        EventType::KeyRotated => "a key is regenerated",
        EventType::KeyRevoked => "a key is revoked",
        EventType::KeyLeaked => "a key reported as leaked is revoked",
        EventType::KeyExpiring => "a key will expire soon",
        EventType::KeyExpired => "a key has expired",
        EventType::KeyRateLimited => "a key is rate limited (first time in an hour)",
        EventType::MemberRemoved => "a member is removed",
        EventType::WebhookDisabled => "an endpoint was disabled after failing",
    }
}

/// The event checkboxes, `chosen` ticked.
pub fn event_boxes(chosen: &[String]) -> Markup {
    html! {
        fieldset {
            legend { "Events to send" }
            @for kind in EventType::ALL {
                label {
                    input type="checkbox" name="events" value=(kind.as_str()) checked[chosen.iter().any(|c| c == kind.as_str())];
                    code { (kind.as_str()) } " — " (event_label(kind))
                }
            }
        }
    }
}

/// `GET /webhooks`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(done): PageQuery<Done>,
) -> Result<Response, PageError> {
    let done = done.message(&[
        ("deleted", "Endpoint deleted."),
        ("expiry", "Expiry reminders saved."),
        (
            "resubmitted",
            "That form was already sent; nothing was added again.",
        ),
    ]);
    let form = AddForm {
        events: vec![
            EventType::KeyRevoked.as_str().to_owned(),
            EventType::KeyLeaked.as_str().to_owned(),
            EventType::KeyExpiring.as_str().to_owned(),
        ],
        ..AddForm::default()
    };
    render(
        &state,
        &viewer,
        &form,
        None,
        done.map(Shown::Done),
        StatusCode::OK,
    )
    .await
}

enum Shown {
    Done(&'static str),
    Problem(String),
}

/// The page; `typed_days`: what the reminders' field held when saving it was refused (else it
/// shows the days saved).
async fn render(
    state: &AppState,
    viewer: &Viewer,
    form: &AddForm,
    typed_days: Option<&str>,
    shown: Option<Shown>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let axum::Json(list) =
        crate::webhooks::api::list_webhooks(State(state.clone()), viewer.principal.clone()).await?;
    let axum::Json(expiry) = crate::webhooks::expiry_notices::get_expiry_notices(
        State(state.clone()),
        viewer.principal.clone(),
    )
    .await?;
    let content = html! {
        @match &shown {
            Some(Shown::Done(message)) => (notice(Some(message))),
            Some(Shown::Problem(message)) => (problem(Some(message))),
            None => {},
        }
        p { "Keyplane posts the events you choose to your endpoints, signed by the "
            a href="https://www.standardwebhooks.com/" { "Standard Webhooks" } " convention." }
        h2 { "Endpoints" }
        @if list.items.is_empty() {
            p { "No endpoint yet." }
        } @else {
            (endpoint_table(&list.items))
        }
        h2 { "Add an endpoint" }
        form method="post" action="/webhooks" {
            (csrf_field(viewer))
            input type="hidden" name="once" value=(SpentForms::issue());
            label for="webhook-url" { "Endpoint URL" }
            input id="webhook-url" name="url" type="url" required value=(form.url) placeholder="https://example.com/hooks/keyplane" autocomplete="off";
            label for="webhook-description" { "Description (optional)" }
            input id="webhook-description" name="description" type="text" maxlength="200" value=(form.description);
            (event_boxes(&form.events))
            div.actions { button type="submit" { "Add endpoint" } }
        }
        h2 { "Expiry reminders" }
        (expiry_form(viewer, &expiry, typed_days))
    };
    let mut response = page::signed_in(viewer, Section::Webhooks, "Webhooks", content);
    *response.status_mut() = status;
    Ok(response)
}

fn endpoint_table(items: &[WebhookView]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Endpoints" }
            thead { tr {
                th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "State" } th scope="col" { "Added" }
            } }
            tbody {
                @for item in items {
                    tr {
                        td {
                            a href={"/webhooks/" (item.id)} { (item.url) }
                            @if !item.description.is_empty() { br; span.muted { (item.description) } }
                        }
                        td { @for event in &item.events { code.badge { (event) } " " } }
                        td { (state_words(item)) }
                        td { (format::absolute(&item.created_at)) }
                    }
                }
            }
        }
    }
}

/// An endpoint's state in words.
pub fn state_words(item: &WebhookView) -> String {
    match (&item.disabled_reason, item.enabled, &item.failing_since) {
        (Some(reason), false, _) => format!("Disabled by Keyplane: {reason}"),
        (None, false, _) => "Disabled".to_owned(),
        (_, true, Some(since)) => format!("Failing since {}", format::absolute(since)),
        (_, true, None) => "Enabled".to_owned(),
    }
}

fn expiry_form(viewer: &Viewer, expiry: &ExpiryNoticesView, typed: Option<&str>) -> Markup {
    let saved: Vec<String> = expiry.days_before.iter().map(u32::to_string).collect();
    let value = typed.map_or_else(|| saved.join(", "), str::to_owned);
    html! {
        p { "Endpoints that want " code { "key.expiring" } " (and, with email set up, each key's owner) are told this many days before a key expires"
            @if expiry.default { " (the default)" } "." }
        form method="post" action="/webhooks/expiry-notices" {
            (csrf_field(viewer))
            label for="expiry-days" { "Days before a key expires" }
            input id="expiry-days" name="days_before" type="text" inputmode="numeric" value=(value) aria-describedby="expiry-days-hint" autocomplete="off";
            p.hint id="expiry-days-hint" { "Up to 5 of 1, 3, 7, 14, 30, 60 and 90, separated by commas; empty for no reminders." }
            div.actions { button type="submit" { "Save reminders" } }
        }
    }
}

/// The add form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    events: Vec<String>,
    /// The form's one-submission token ([`crate::accounts::once`]).
    #[serde(default)]
    once: String,
}

/// `POST /webhooks`: the endpoint, and its secret, once.
pub async fn add(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<AddForm>,
) -> Result<Response, PageError> {
    viewer.principal.require(Permission::ManageMembers)?;
    if !state
        .spent_forms
        .spend(&form.once, std::time::Instant::now())
    {
        return Ok(see_other("/webhooks?done=resubmitted"));
    }
    let description = form.description.trim();
    let request = CreateWebhookRequest {
        url: form.url.trim().to_owned(),
        events: form.events.clone(),
        description: (!description.is_empty()).then(|| description.to_owned()),
        enabled: None,
    };
    let answer = crate::webhooks::api::create_webhook(
        State(state.clone()),
        viewer.principal.clone(),
        ApiJson(request),
    )
    .await;
    match answer {
        Ok((_, axum::Json(created))) => Ok(reveal(&viewer, &created, "Your new endpoint")),
        Err(error @ (ApiError::InvalidRequest(_) | ApiError::Conflict(_))) => {
            let status = error.status();
            render(
                &state,
                &viewer,
                &form,
                None,
                Some(Shown::Problem(error.to_string())),
                status,
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

/// The copy-once view of a signing secret (a new endpoint's, or a rotated one's).
pub fn reveal(viewer: &Viewer, made: &WebhookWithSecret, title: &str) -> Response {
    let address = format!("/webhooks/{}", made.webhook.id);
    let content = html! {
        div.secret {
            p { "The signing secret of " strong { (made.webhook.url) } ":" }
            code id="new-secret" { (made.secret) }
            div.actions {
                button type="button" data-copy="new-secret" data-status="copy-status" { "Copy" }
                span id="copy-status" role="status" aria-live="polite" {}
            }
            p { strong { "You will not see it again." } " Give it to the receiver, which checks each delivery's "
                code { "webhook-signature" } " with it." }
        }
        @if let Some(until) = &made.webhook.previous_secret_expires_at {
            p { "The previous secret also signs each delivery until " time datetime=(until) { (format::absolute(until)) } "." }
        }
        div.actions { a.button href=(address) { "Done" } }
    };
    page::signed_in_with(viewer, Section::Webhooks, title, content, Some(&address))
}

/// The expiry reminders form.
#[derive(Debug, Deserialize)]
pub struct ExpiryForm {
    #[serde(default)]
    days_before: String,
}

/// The days a field lists (`30, 7 1`), or what is wrong with it.
pub fn days_of(text: &str) -> Result<Vec<u32>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<u32>()
                .map_err(|_| format!("`{part}` is not a whole number of days"))
        })
        .collect()
}

/// `POST /webhooks/expiry-notices`.
pub async fn save_expiry_notices(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<ExpiryForm>,
) -> Result<Response, PageError> {
    let problem_page = async |message: String| {
        let add = AddForm::default();
        render(
            &state,
            &viewer,
            &add,
            Some(&form.days_before),
            Some(Shown::Problem(message)),
            StatusCode::BAD_REQUEST,
        )
        .await
    };
    let days_before = match days_of(&form.days_before) {
        Ok(days) => days,
        Err(message) => return problem_page(message).await,
    };
    let answer = crate::webhooks::expiry_notices::put_expiry_notices(
        State(state.clone()),
        viewer.principal.clone(),
        ApiJson(ExpiryNoticesRequest { days_before }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/webhooks?done=expiry")),
        Err(ApiError::InvalidRequest(message)) => problem_page(message).await,
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_days_takes_commas_and_spaces() {
        assert_eq!(days_of("30, 7 1"), Ok(vec![30, 7, 1]));
        assert_eq!(days_of("  "), Ok(vec![]));
        assert!(days_of("7, soon").is_err_and(|message| message.contains("`soon`")));
        assert!(days_of("-1").is_err());
    }
}
