//! What can be done to a key from its page, each a form and its post: edit (name, scopes,
//! expiry, rate limit), regenerate (now, or with the old key working a while longer, never
//! past its expiry) ending on the copy-once view, revoke (a reason, an optional note, and a
//! button naming the key), and delete (revoked or expired keys only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::create::{
    CreateForm, expiry_fieldset, expiry_of, offered_scopes, rate_limit_of, reveal,
};
use super::detail::load;
use crate::accounts::once::SpentForms;
use crate::dashboard::failure::PagePath;
use crate::dashboard::page::{self, PageError, Section, csrf_field, problem, see_other};
use crate::dashboard::viewer::{Submitted, Viewer};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, OptionalJson};
use crate::keys::model::{KeyView, RevokeKeyRequest, RotateKeyRequest, UpdateKeyRequest};
use crate::state::AppState;
use crate::store::RevocationReason;

/// The grace periods offered when regenerating, in seconds, with their labels.
pub const GRACE_CHOICES: [(u64, &str); 4] = [
    (0, "No, stop it now"),
    (3_600, "For 1 hour"),
    (86_400, "For 24 hours"),
    (604_800, "For 7 days"),
];

/// The revocation reasons, as the API names them, with their labels.
pub const REASONS: [(RevocationReason, &str); 6] = [
    (RevocationReason::Compromised, "Compromised"),
    (RevocationReason::Replaced, "Replaced"),
    (RevocationReason::Unused, "Unused"),
    (RevocationReason::EmployeeDeparture, "Employee departure"),
    (RevocationReason::ProjectEnded, "Project ended"),
    (RevocationReason::Other, "Other"),
];

fn quoted(name: &str) -> String {
    format!("\u{201c}{name}\u{201d}")
}

// ----- edit -----

fn edit_page(
    viewer: &Viewer,
    key: &KeyView,
    offered: &[String],
    values: &CreateForm,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let mut offered: Vec<String> = offered.to_vec();
    offered.extend(key.scopes.iter().cloned());
    offered.sort();
    offered.dedup();
    let content = html! {
        (problem(message))
        form method="post" action={"/keys/" (key.id) "/edit"} {
            (csrf_field(viewer))
            label for="name" { "Name" }
            input id="name" name="name" type="text" required maxlength="100" value=(values.name);
            fieldset {
                legend { "Scopes" }
                @for scope in &offered {
                    label {
                        input type="checkbox" name="scopes" value=(scope) checked[values.scopes.contains(scope)];
                        code { (scope) }
                    }
                }
                label for="more_scopes" { "Other scopes" }
                input id="more_scopes" name="more_scopes" type="text" value=(values.more_scopes);
            }
            (expiry_fieldset(&values.expires, &values.expires_date, true))
            fieldset {
                legend { "Rate limit" }
                p.hint { "Leave empty for the deployment's default." }
                label for="requests_per_minute" { "Rate limit (requests per minute)" }
                input id="requests_per_minute" name="requests_per_minute" type="number" min="1" value=(values.requests_per_minute);
                label for="burst" { "Burst" }
                input id="burst" name="burst" type="number" min="1" value=(values.burst);
            }
            div.actions {
                button type="submit" { "Save changes" }
                a href={"/keys/" (key.id)} { "Cancel" }
            }
        }
    };
    let mut response = page::signed_in(
        viewer,
        Section::Keys,
        &format!("Edit {}", quoted(&key.name)),
        content,
    );
    *response.status_mut() = status;
    response
}

fn current_values(key: &KeyView) -> CreateForm {
    CreateForm {
        name: key.name.clone(),
        scopes: key.scopes.clone(),
        requests_per_minute: key
            .rate_limit
            .as_ref()
            .map(|l| l.requests_per_minute.to_string())
            .unwrap_or_default(),
        burst: key
            .rate_limit
            .as_ref()
            .map(|l| l.burst.to_string())
            .unwrap_or_default(),
        ..CreateForm::default()
    }
}

/// `GET /keys/{id}/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    refuse_unless_changeable(&viewer, &key)?;
    let offered = offered_scopes(&state, &viewer).await;
    Ok(edit_page(
        &viewer,
        &key,
        &offered,
        &current_values(&key),
        None,
        StatusCode::OK,
    ))
}

fn refuse_unless_changeable(viewer: &Viewer, key: &KeyView) -> Result<(), PageError> {
    if super::detail::may_change_key(viewer, key) {
        Ok(())
    } else if viewer
        .principal
        .access
        .may(crate::access::Permission::ManageOwnKeys)
    {
        Err(ApiError::NotKeyOwner.into())
    } else {
        Err(ApiError::Forbidden("your role may not change keys".into()).into())
    }
}

/// `POST /keys/{id}/edit`: only what changed is sent.
pub async fn edit(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<CreateForm>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    let request = match update_of(&key, &form) {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(see_other(&format!("/keys/{}", key.id))),
        Err(message) => return Ok(invalid_edit(&state, &viewer, &key, &form, &message).await),
    };
    let answer = crate::keys::update_key(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.clone()),
        ApiJson(request),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other(&format!("/keys/{}?done=updated", key.id))),
        Err(ApiError::InvalidRequest(message)) | Err(ApiError::InsufficientScope(message)) => {
            Ok(invalid_edit(&state, &viewer, &key, &form, &message).await)
        }
        Err(ApiError::Conflict(conflict)) => {
            Ok(invalid_edit(&state, &viewer, &key, &form, &conflict.to_string()).await)
        }
        Err(error) => Err(error.into()),
    }
}

async fn invalid_edit(
    state: &AppState,
    viewer: &Viewer,
    key: &KeyView,
    form: &CreateForm,
    message: &str,
) -> Response {
    let offered = offered_scopes(state, viewer).await;
    edit_page(
        viewer,
        key,
        &offered,
        form,
        Some(message),
        StatusCode::BAD_REQUEST,
    )
}

/// The API update an edit form asks for (only what changed; `None`: nothing did), or what is
/// wrong with it.
fn update_of(key: &KeyView, form: &CreateForm) -> Result<Option<UpdateKeyRequest>, String> {
    let expires = if form.expires.is_empty() {
        None
    } else {
        expiry_of(&form.expires, &form.expires_date)?
    };
    let limit = rate_limit_of(&form.requests_per_minute, &form.burst)?;
    let same_limit = match (&limit, &key.rate_limit) {
        (None, None) => true,
        (Some(new), Some(old)) => {
            new.requests_per_minute == old.requests_per_minute && new.burst == old.burst
        }
        _ => false,
    };
    let scopes = form.all_scopes();
    let mut current_scopes = key.scopes.clone();
    current_scopes.sort();
    let request = UpdateKeyRequest {
        name: (form.name != key.name).then(|| form.name.clone()),
        scopes: (scopes != current_scopes).then_some(scopes),
        expires,
        rate_limit: (!same_limit).then_some(limit),
        metadata: None,
    };
    let unchanged = request.name.is_none()
        && request.scopes.is_none()
        && request.expires.is_none()
        && request.rate_limit.is_none();
    Ok((!unchanged).then_some(request))
}

// ----- regenerate -----

/// `GET /keys/{id}/regenerate`.
pub async fn regenerate_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    refuse_unless_changeable(&viewer, &key)?;
    let content = html! {
        p {
            "A new key with the same name, scopes and limits replaces " code { (key.truncated_key) } ". "
            @if key.expires_at.is_some() {
                "It gets as long to live as this one had when it was made, counted from now."
            } @else {
                "Like this one, it never expires."
            }
        }
        form method="post" action={"/keys/" (key.id) "/regenerate"} {
            (csrf_field(&viewer))
            input type="hidden" name="once" value=(SpentForms::issue());
            fieldset {
                legend { "Old key keeps working" }
                @for (seconds, label) in GRACE_CHOICES {
                    label { input type="radio" name="grace_seconds" value=(seconds) checked[seconds == 0]; (label) }
                }
                @if let Some(until) = &key.expires_at {
                    p.hint { "Never past its own expiry, " (crate::dashboard::format::absolute(until)) "." }
                }
            }
            div.actions {
                button type="submit" { "Regenerate key" }
                a href={"/keys/" (key.id)} { "Cancel" }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Keys,
        &format!("Regenerate {}", quoted(&key.name)),
        content,
    ))
}

/// The regenerate form.
#[derive(Debug, Deserialize)]
pub struct RegenerateForm {
    #[serde(default)]
    grace_seconds: u64,
    #[serde(default)]
    once: String,
}

/// `POST /keys/{id}/regenerate`: the new key, once.
pub async fn regenerate(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<RegenerateForm>,
) -> Result<Response, PageError> {
    if !GRACE_CHOICES
        .iter()
        .any(|(seconds, _)| *seconds == form.grace_seconds)
    {
        return Err(PageError::BadForm(
            "choose one of the grace periods offered".into(),
        ));
    }
    // Who may regenerate is settled before the token is looked at.
    let key = load(&state, &viewer, &id).await?;
    refuse_unless_changeable(&viewer, &key)?;
    if !state
        .spent_forms
        .spend(&form.once, std::time::Instant::now())
    {
        return Ok(see_other("/keys?done=resubmitted"));
    }
    let body = RotateKeyRequest {
        grace_seconds: form.grace_seconds,
        expires: None,
    };
    let (_, axum::Json(rotated)) = crate::keys::rotate_key(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
        OptionalJson(body),
    )
    .await?;
    Ok(reveal(
        &viewer,
        &rotated.key,
        &rotated.record,
        Some(&rotated.previous),
    ))
}

// ----- revoke -----

/// `GET /keys/{id}/revoke`.
pub async fn revoke_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    refuse_unless_changeable(&viewer, &key)?;
    let content = html! {
        p { "Every request with " code { (key.truncated_key) } " is refused from the moment edges hear of it (seconds). This cannot be undone." }
        form method="post" action={"/keys/" (key.id) "/revoke"} {
            (csrf_field(&viewer))
            label for="reason" { "Reason" }
            select id="reason" name="reason" required {
                @for (reason, label) in REASONS {
                    option value=(reason.as_str()) { (label) }
                }
            }
            label for="note" { "Note" }
            p.hint id="note-hint" { "Optional: what happened, for the audit log." }
            textarea id="note" name="note" maxlength="500" aria-describedby="note-hint" {}
            div.actions {
                button.danger type="submit" { "Revoke " (quoted(&key.name)) }
                a href={"/keys/" (key.id)} { "Cancel" }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Keys,
        &format!("Revoke {}", quoted(&key.name)),
        content,
    ))
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    reason: String,
    #[serde(default)]
    note: String,
}

/// `POST /keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<RevokeForm>,
) -> Result<Response, PageError> {
    let reason = REASONS
        .iter()
        .find(|(reason, _)| reason.as_str() == form.reason)
        .map(|(reason, _)| *reason)
        .ok_or_else(|| PageError::BadForm(format!("unknown reason `{}`", form.reason)))?;
    let body = RevokeKeyRequest {
        reason,
        // A browser sends a textarea's line breaks as CRLF: the note keeps them as newlines.
        note: Some(form.note.trim().replace("\r\n", "\n").replace('\r', "\n"))
            .filter(|note| !note.is_empty()),
    };
    let axum::Json(revoked) = crate::keys::revoke_key(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
        ApiJson(body),
    )
    .await?;
    Ok(see_other(&format!(
        "/keys/{}?done=revoked",
        revoked.record.id
    )))
}

// ----- delete -----

/// `GET /keys/{id}/delete`.
pub async fn delete_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    refuse_unless_changeable(&viewer, &key)?;
    if key.status == crate::store::KeyState::Active {
        let content = html! {
            p { "Only revoked or expired keys can be deleted, and this one still works." }
            div.actions {
                a.button.secondary href={"/keys/" (key.id) "/revoke"} { "Revoke it first" }
                a href={"/keys/" (key.id)} { "Back to the key" }
            }
        };
        let title = format!("Delete {}", quoted(&key.name));
        return Ok(page::signed_in(&viewer, Section::Keys, &title, content));
    }
    let content = html! {
        p { "The key leaves the listings; its audit trail stays." }
        form method="post" action={"/keys/" (key.id) "/delete"} {
            (csrf_field(&viewer))
            div.actions {
                button.danger type="submit" { "Delete " (quoted(&key.name)) }
                a href={"/keys/" (key.id)} { "Cancel" }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Keys,
        &format!("Delete {}", quoted(&key.name)),
        content,
    ))
}

/// `POST /keys/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form: _ }: Submitted<crate::dashboard::entry::Empty>,
) -> Result<Response, PageError> {
    crate::keys::delete_key(State(state.clone()), viewer.principal.clone(), ApiPath(id)).await?;
    Ok(see_other("/keys?done=deleted"))
}
