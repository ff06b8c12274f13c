//! `/account`: the signed-in person's password and sessions — change the password (the other
//! sessions end), end one session, or sign out everywhere.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::entry::Empty;
use super::failure::{PagePath, PageQuery};
use super::format;
use super::frame::see_other_keeping_cookies;
use super::page::{self, Done, PageError, Section, csrf_field, notice, problem, see_other};
use super::viewer::{Submitted, Viewer};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::people::me::ChangePassword;
use crate::people::sessions;
use crate::state::AppState;

/// `GET /account`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(done): PageQuery<Done>,
) -> Result<Response, PageError> {
    let message = done.message(&[
        (
            "password",
            "Password changed. Your other sessions have ended.",
        ),
        ("ended", "Session ended."),
    ]);
    render(&state, &viewer, message, None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    done: Option<&str>,
    trouble: Option<&str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let axum::Json(list) =
        sessions::list_sessions(State(state.clone()), viewer.principal.clone()).await?;
    let now = state.now();
    let person = viewer.principal.person();
    let content = html! {
        (notice(done))
        (problem(trouble))
        @if let Some(person) = person {
            p { "Signed in as " strong { (person.display_name) } @if let Some(email) = &person.email { " (" (email) ")" } "." }
        }
        h2 { "Change password" }
        form method="post" action="/account/password" {
            (csrf_field(viewer))
            input type="text" name="username" autocomplete="username" hidden value=(person.and_then(|p| p.email.clone()).unwrap_or_default());
            label for="current_password" { "Current password" }
            input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
            label for="new_password" { "New password" }
            p.hint id="new-hint" { "At least 12 characters; not a common password." }
            input id="new_password" name="new_password" type="password" autocomplete="new-password" aria-describedby="new-hint" required minlength="12";
            label for="confirm_password" { "Confirm new password" }
            input id="confirm_password" name="confirm_password" type="password" autocomplete="new-password" required;
            div.actions { button type="submit" { "Change password" } }
        }
        h2 { "Sessions" }
        table {
            caption.visually-hidden { "Your sessions" }
            thead { tr {
                th scope="col" { "Browser" } th scope="col" { "Address" } th scope="col" { "Signed in" }
                th scope="col" { "Last active" } th scope="col" { "" span.visually-hidden { "Actions" } }
            } }
            tbody {
                @for session in &list.data {
                    tr {
                        td { (session.user_agent.as_deref().unwrap_or("Unknown")) @if session.current { " " span.badge.active { "This browser" } } }
                        td.mono { (session.ip.as_deref().unwrap_or("")) }
                        td { (format::relative(&session.created_at, now)) }
                        td { (format::relative(&session.last_seen_at, now)) }
                        td {
                            @if !session.current {
                                form method="post" action={"/account/sessions/" (session.id) "/end"} {
                                    (csrf_field(viewer))
                                    button.secondary type="submit" { "End" span.visually-hidden { " session from " (session.ip.as_deref().unwrap_or("an unknown address")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/account/sign-out-everywhere" {
            (csrf_field(viewer))
            div.actions { button.danger type="submit" { "Sign out everywhere" } }
        }
    };
    let mut response = page::signed_in(viewer, Section::Account, "Your account", content);
    *response.status_mut() = status;
    Ok(response)
}

/// The password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
}

/// `POST /account/password`.
pub async fn change_password(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<PasswordForm>,
) -> Result<Response, PageError> {
    if form.new_password != form.confirm_password {
        return render(
            &state,
            &viewer,
            None,
            Some("The two new passwords differ."),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let body = ChangePassword {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    match crate::people::me::change_password(
        State(state.clone()),
        viewer.principal.clone(),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Ok(see_other("/account?done=password")),
        Err(
            error @ (ApiError::WeakPassword(_)
            | ApiError::InvalidCredentials
            | ApiError::TooManyAttempts(_)),
        ) => {
            let message = match &error {
                ApiError::InvalidCredentials => "The current password is not correct.".to_owned(),
                other => other.to_string(),
            };
            render(&state, &viewer, None, Some(&message), error.status()).await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /account/sessions/{id}/end`.
pub async fn end_session(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form: _ }: Submitted<Empty>,
) -> Result<Response, PageError> {
    sessions::end_session(State(state.clone()), viewer.principal.clone(), ApiPath(id)).await?;
    Ok(see_other("/account?done=ended"))
}

/// `POST /account/sign-out-everywhere`: every session ends, this one too.
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    Submitted { viewer, form: _ }: Submitted<Empty>,
) -> Response {
    match sessions::sign_out_everywhere(State(state), viewer.principal).await {
        Ok(answer) => see_other_keeping_cookies(&answer, "/sign-in"),
        Err(error) => PageError::from(error).into_response(),
    }
}
