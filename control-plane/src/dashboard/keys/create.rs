//! Creating a key (`GET`/`POST /keys/new`) and the copy-once view both creation and
//! regeneration end on.
//!
//! The scope checkboxes are the scopes the viewer may grant: those named by their role's
//! ceiling and those already held by the organization's recent keys, less what the ceiling
//! refuses; a free-text field takes others. The copy-once view is the POST's answer (never
//! stored, `no-store`); its script puts the key's own address in the address bar, so a reload
//! or the back button lands on the key's page, which shows the truncated form only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::{Permission, ScopeCeiling};
use crate::accounts::once::SpentForms;
use crate::dashboard::format;
use crate::dashboard::page::{self, PageError, Section, csrf_field, problem, see_other};
use crate::dashboard::viewer::{Submitted, Viewer};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::keys::model::{
    CreateKeyRequest, EnvironmentName, KeyView, ListKeysQuery, RateLimitBody,
};
use crate::state::AppState;

/// The expiry presets, as the API names them, with their labels.
pub const EXPIRY_PRESETS: [(&str, &str); 6] = [
    ("1h", "1 hour"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("1y", "1 year"),
    ("never", "Never"),
];

/// The create form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    /// The name.
    #[serde(default)]
    pub name: String,
    /// `live` or `test`.
    #[serde(default)]
    pub environment: String,
    /// The ticked scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes typed in, separated by spaces or commas.
    #[serde(default)]
    pub more_scopes: String,
    /// A preset (`1h` … `never`), `date`, or empty (keep, when editing).
    #[serde(default)]
    pub expires: String,
    /// The day picked for `date`.
    #[serde(default)]
    pub expires_date: String,
    /// The rate limit, empty for none.
    #[serde(default)]
    pub requests_per_minute: String,
    /// The burst, empty for a tenth of the per-minute figure.
    #[serde(default)]
    pub burst: String,
    /// The form's one-submission token ([`crate::accounts::once`]).
    #[serde(default)]
    pub once: String,
}

impl CreateForm {
    /// Every scope asked for: the ticked boxes and the typed ones.
    pub fn all_scopes(&self) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        scopes.extend(
            self.more_scopes
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|scope| !scope.is_empty())
                .map(str::to_owned),
        );
        scopes.sort();
        scopes.dedup();
        scopes
    }
}

/// The expiry the form asks for, in the API's words.
pub fn expiry_of(expires: &str, date: &str) -> Result<Option<String>, String> {
    match expires {
        "" => Err("choose when the key expires".into()),
        "date" => format::end_of_day(date.trim())
            .map(Some)
            .ok_or_else(|| "pick the expiry date (year-month-day)".into()),
        preset if EXPIRY_PRESETS.iter().any(|(value, _)| *value == preset) => {
            Ok(Some(preset.to_owned()))
        }
        other => Err(format!("unknown expiry `{other}`")),
    }
}

/// A rate limit from the form's two fields; the burst defaults to a tenth of the per-minute
/// figure (at least 1), the proportion of the deployment's own default.
pub fn rate_limit_of(per_minute: &str, burst: &str) -> Result<Option<RateLimitBody>, String> {
    let per_minute = per_minute.trim();
    if per_minute.is_empty() {
        return Ok(None);
    }
    let requests_per_minute: u32 = per_minute
        .parse()
        .map_err(|_| format!("the rate limit must be a whole number, got `{per_minute}`"))?;
    let burst = match burst.trim() {
        "" => (requests_per_minute / 10).max(1),
        text => text
            .parse()
            .map_err(|_| format!("the burst must be a whole number, got `{text}`"))?,
    };
    Ok(Some(RateLimitBody {
        requests_per_minute,
        burst,
    }))
}

/// The scopes offered as checkboxes to this viewer.
pub async fn offered_scopes(state: &AppState, viewer: &Viewer) -> Vec<String> {
    let ceiling = &viewer.principal.access.ceiling;
    let mut offered: Vec<String> = match ceiling {
        ScopeCeiling::Only(allowed) => allowed.as_slice().iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    let recent = ListKeysQuery {
        limit: Some(200),
        ..ListKeysQuery::default()
    };
    if let Ok(axum::Json(page)) = crate::keys::list_keys(
        State(state.clone()),
        viewer.principal.clone(),
        ApiQuery(recent),
    )
    .await
    {
        offered.extend(page.data.into_iter().flat_map(|key| key.scopes));
    }
    offered.retain(|text| {
        text.parse::<keyplane_shared::scope::Scope>()
            .is_ok_and(|scope| ceiling.allows(&scope))
    });
    offered.sort();
    offered.dedup();
    offered
}

/// `GET /keys/new`.
pub async fn form(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.principal.require(Permission::CreateKeys)?;
    let offered = offered_scopes(&state, &viewer).await;
    let values = CreateForm {
        environment: "live".into(),
        expires: "90d".into(),
        ..CreateForm::default()
    };
    Ok(form_page(&viewer, &offered, &values, None, StatusCode::OK))
}

fn form_page(
    viewer: &Viewer,
    offered: &[String],
    values: &CreateForm,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let content = html! {
        (problem(message))
        form method="post" action="/keys/new" {
            (csrf_field(viewer))
            input type="hidden" name="once" value=(SpentForms::issue());
            label for="name" { "Name" }
            p.hint id="name-hint" { "What the key is for, e.g. “Billing sync (production)”." }
            input id="name" name="name" type="text" required maxlength="100" aria-describedby="name-hint" value=(values.name);
            label for="environment" { "Environment" }
            select id="environment" name="environment" {
                option value="live" selected[values.environment == "live"] { "live" }
                option value="test" selected[values.environment == "test"] { "test" }
            }
            fieldset {
                legend { "Scopes" }
                @if offered.is_empty() {
                    p.hint { "No scopes in use yet: type them below." }
                }
                @for scope in offered {
                    label {
                        input type="checkbox" name="scopes" value=(scope) checked[values.scopes.contains(scope)];
                        code { (scope) }
                    }
                }
                label for="more_scopes" { "Other scopes" }
                p.hint id="more-hint" { "resource:action, separated by spaces or commas. Only scopes you hold can be granted." }
                input id="more_scopes" name="more_scopes" type="text" aria-describedby="more-hint" value=(values.more_scopes);
            }
            (expiry_fieldset(&values.expires, &values.expires_date, false))
            fieldset {
                legend { "Rate limit (optional)" }
                label for="requests_per_minute" { "Rate limit (requests per minute)" }
                input id="requests_per_minute" name="requests_per_minute" type="number" min="1" inputmode="numeric" value=(values.requests_per_minute);
                label for="burst" { "Burst" }
                p.hint id="burst-hint" { "Requests allowed at once; defaults to a tenth of the per-minute figure." }
                input id="burst" name="burst" type="number" min="1" inputmode="numeric" aria-describedby="burst-hint" value=(values.burst);
            }
            div.actions {
                button type="submit" { "Create key" }
                a href="/keys" { "Cancel" }
            }
        }
    };
    let mut response = page::signed_in(viewer, Section::Keys, "Create API key", content);
    *response.status_mut() = status;
    response
}

/// The "Expires" radio group (with "Keep the current expiry" when editing).
pub fn expiry_fieldset(chosen: &str, date: &str, editing: bool) -> Markup {
    html! {
        fieldset {
            legend { "Expires" }
            @if editing {
                label { input type="radio" name="expires" value="" checked[chosen.is_empty()]; "Keep the current expiry" }
            }
            @for (value, label) in EXPIRY_PRESETS {
                label { input type="radio" name="expires" value=(value) checked[chosen == value]; (label) }
            }
            label { input type="radio" name="expires" value="date" checked[chosen == "date"]; "On a date" }
            label for="expires-date" { "Expiry date" }
            input id="expires-date" name="expires_date" type="date" value=(date);
        }
    }
}

/// `POST /keys/new`: the key, once.
pub async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<CreateForm>,
) -> Result<Response, PageError> {
    viewer.principal.require(Permission::CreateKeys)?;
    let request = match request_of(&form) {
        Ok(request) => request,
        Err(message) => return Ok(invalid_form(&state, &viewer, &form, &message).await),
    };
    if !state
        .spent_forms
        .spend(&form.once, std::time::Instant::now())
    {
        return Ok(see_other("/keys?done=resubmitted"));
    }
    let answer = crate::keys::create_key(
        State(state.clone()),
        viewer.principal.clone(),
        ApiJson(request),
    )
    .await;
    match answer {
        Ok((_, axum::Json(created))) => Ok(reveal(&viewer, &created.key, &created.record, None)),
        Err(ApiError::InvalidRequest(message)) | Err(ApiError::InsufficientScope(message)) => {
            Ok(invalid_form(&state, &viewer, &form, &message).await)
        }
        Err(error) => Err(error.into()),
    }
}

async fn invalid_form(
    state: &AppState,
    viewer: &Viewer,
    form: &CreateForm,
    message: &str,
) -> Response {
    let offered = offered_scopes(state, viewer).await;
    form_page(
        viewer,
        &offered,
        form,
        Some(message),
        StatusCode::BAD_REQUEST,
    )
}

/// The API request a create form asks for, or what is wrong with it.
fn request_of(form: &CreateForm) -> Result<CreateKeyRequest, String> {
    let environment = match form.environment.as_str() {
        "live" => EnvironmentName::Live,
        "test" => EnvironmentName::Test,
        other => return Err(format!("unknown environment `{other}`")),
    };
    Ok(CreateKeyRequest {
        name: form.name.clone(),
        environment,
        scopes: form.all_scopes(),
        expires: expiry_of(&form.expires, &form.expires_date)?,
        rate_limit: rate_limit_of(&form.requests_per_minute, &form.burst)?,
        metadata: None,
    })
}

/// The copy-once view of a new key (`previous`: the key it replaces, when regenerated).
pub fn reveal(
    viewer: &Viewer,
    key: &str,
    record: &KeyView,
    previous: Option<&KeyView>,
) -> Response {
    let address = format!("/keys/{}", record.id);
    let content = html! {
        div.secret {
            p { "The key for " strong { (record.name) } " (" (super::environment(record.environment)) "):" }
            code id="new-key" { (key) }
            div.actions {
                button type="button" data-copy="new-key" data-status="copy-status" { "Copy" }
                span id="copy-status" role="status" aria-live="polite" {}
            }
            p { strong { "You will not see it again." } " Store it now, in a secret manager or your deployment's settings." }
            p { "From now on it shows as " code id="truncated-key" { (record.truncated_key) } "." }
        }
        @if let Some(previous) = previous {
            @match &previous.expires_at {
                Some(until) if previous.status == crate::store::KeyState::Active => p {
                    "The old key " code { (previous.truncated_key) } " keeps working until "
                    time datetime=(until) { (format::absolute(until)) } "."
                },
                _ => p { "The old key " code { (previous.truncated_key) } " has stopped working." },
            }
        }
        div.actions { a.button href=(address) { "Done" } }
    };
    page::signed_in_with(
        viewer,
        Section::Keys,
        "Your new API key",
        content,
        Some(&address),
    )
}

/// Turns a page that cannot be shown to this viewer into its error page.
pub fn refused(error: ApiError) -> Response {
    PageError::from(error).into_response()
}
