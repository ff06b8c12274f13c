//! The ways in: sign-in, sign-out, and one-time links (the first owner's setup link and
//! invitations).
//!
//! A one-time link carries its token in the URL fragment, which the browser never sends: the
//! page's script moves it into a form that posts it (step one, `POST /invitation/open`), and the
//! server answers with the form the invitation needs — email and name for the setup link, name
//! and password for a new account, the password alone for someone who already has an account.
//! Forms posted without a session must come from this origin (no login CSRF).

use super::failure::PageForm;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::frame::{fragment_token_form, keeping_cookies, see_other_keeping_cookies};
use super::page::{self, PageError, problem, see_other};
use super::viewer::Viewer;
use super::viewer::posted_from_here;
use crate::accounts::tokens;
use crate::auth::Anonymous;
use crate::extract::ApiJson;
use crate::people::{invitations, sessions};
use crate::state::AppState;

/// `GET /`: the keys when signed in, the sign-in page otherwise.
pub async fn root(viewer: Result<Viewer, PageError>) -> Response {
    match viewer {
        Ok(_) => see_other("/keys"),
        Err(_) => see_other("/sign-in"),
    }
}

fn sign_in_page(status: StatusCode, email: &str, message: Option<&str>) -> Response {
    page::public(
        status,
        "Sign in",
        html! {
            (problem(message))
            form method="post" action="/sign-in" {
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                div.actions { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// `GET /sign-in`.
pub async fn sign_in_form() -> Response {
    sign_in_page(StatusCode::OK, "", None)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
}

/// `POST /sign-in`: on success the session cookie and a redirect to the keys.
pub async fn sign_in(
    State(state): State<AppState>,
    anonymous: Anonymous,
    uri: OriginalUri,
    PageForm(form): PageForm<SignInForm>,
) -> Response {
    if let Err(refused) = posted_from_here(&state, &anonymous, &uri) {
        return refused.into_response();
    }
    let body = sessions::SignInRequest {
        email: form.email.clone(),
        password: form.password,
        organization: None,
    };
    match sessions::sign_in(State(state), anonymous, ApiJson(body)).await {
        Ok(signed_in) => see_other_keeping_cookies(&signed_in, "/keys"),
        Err(error) => {
            let status = error.status();
            sign_in_page(status, &form.email, Some(&error.to_string()))
        }
    }
}

/// `POST /sign-out`: this session ends; back to the sign-in page. From the portal, a page
/// saying so in the host's frame (framed as the portal's pages are), with the way back to the
/// host product when it named one: a redirect to the host would break the form-action policy.
pub async fn sign_out(
    State(state): State<AppState>,
    submitted: super::viewer::Submitted<Empty>,
) -> Response {
    let viewer = submitted.viewer;
    let portal = viewer
        .portal
        .then(|| (viewer.look.org_name.clone(), viewer.return_url.clone()));
    match sessions::sign_out(State(state), viewer.principal).await {
        Ok(answer) => match portal {
            Some((org_name, return_url)) => signed_out_of_portal(&answer, &org_name, return_url),
            None => see_other_keeping_cookies(&answer, "/sign-in"),
        },
        Err(error) => PageError::from(error).into_response(),
    }
}

/// The portal's "signed out" page, carrying the cookie removal of the API's `answer`.
fn signed_out_of_portal(answer: &Response, org_name: &str, return_url: Option<String>) -> Response {
    let page = page::public(
        StatusCode::OK,
        "Signed out",
        html! {
            p { "You are signed out of " (org_name) "'s API keys." }
            @if let Some(url) = return_url {
                div.actions { a.button href=(url) target="_top" { "Back to " (org_name) } }
            }
        },
    );
    keeping_cookies(answer, page)
}

/// A form with no fields of its own (its CSRF token only).
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `GET /invitation`: step one, the token from the fragment posted by the script.
pub async fn invitation_link() -> Response {
    page::public(
        StatusCode::OK,
        "Join Keyplane",
        fragment_token_form(
            "/invitation/open",
            "Invitation code",
            "This link has no token in it: open the whole link from the message you received.",
        ),
    )
}

/// Step one's form.
#[derive(Debug, Deserialize)]
pub struct OpenForm {
    token: String,
}

/// The acceptance form (step two).
#[derive(Debug, Deserialize)]
pub struct AcceptForm {
    token: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    password: String,
    #[serde(default)]
    confirm_password: Option<String>,
}

/// What the acceptance form asks for.
struct Asking<'a> {
    token: &'a str,
    /// The invitation's email, or none for the setup link (then the form asks).
    email: Option<&'a str>,
    /// Whether that email already has an account (password only).
    existing: bool,
}

fn accept_page(
    status: StatusCode,
    asking: &Asking<'_>,
    values: &AcceptForm,
    message: Option<&str>,
) -> Response {
    let title = if asking.email.is_none() {
        "Set up your account"
    } else {
        "Accept your invitation"
    };
    page::public(
        status,
        title,
        html! {
            (problem(message))
            form method="post" action="/invitation" {
                input type="hidden" name="token" value=(asking.token);
                @match asking.email {
                    Some(email) => p { "For " strong { (email) } "." },
                    None => {
                        label for="email" { "Email" }
                        input id="email" name="email" type="email" autocomplete="username" required value=(values.email.as_deref().unwrap_or(""));
                    }
                }
                @if asking.existing {
                    p.hint { "You already have an account: enter its password to join." }
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                    div.actions { button type="submit" { "Join" } }
                } @else {
                    label for="display_name" { "Your name" }
                    input id="display_name" name="display_name" type="text" autocomplete="name" required value=(values.display_name.as_deref().unwrap_or(""));
                    label for="password" { "Password" }
                    p.hint id="password-hint" { "At least 12 characters; not a common password." }
                    input id="password" name="password" type="password" autocomplete="new-password" aria-describedby="password-hint" required minlength="12";
                    label for="confirm_password" { "Confirm password" }
                    input id="confirm_password" name="confirm_password" type="password" autocomplete="new-password" required;
                    div.actions { button type="submit" { "Create account" } }
                }
            }
        },
    )
}

async fn asking<'a>(
    state: &AppState,
    token: &'a str,
) -> Result<(Asking<'a>, Option<String>), Response> {
    let gone = |message: &str| {
        page::public(
            StatusCode::NOT_FOUND,
            "This link does not work",
            html! { p { (message) } p { a href="/sign-in" { "Sign in" } } },
        )
    };
    let invitation = match state
        .store
        .invitation_by_token(&tokens::digest(token.trim()))
        .await
    {
        Ok(Some(invitation)) => invitation,
        Ok(None) => {
            return Err(gone(
                "No invitation has this link: check that you opened all of it.",
            ));
        }
        Err(error) => return Err(PageError::from(error).into_response()),
    };
    let now = state.now();
    if invitation.accepted_at.is_some() {
        return Err(gone("This link has already been used. Sign in instead."));
    }
    if invitation.revoked_at.is_some() {
        return Err(gone(
            "This invitation was revoked: ask whoever invited you for a new one.",
        ));
    }
    if now >= invitation.expires_at {
        return Err(gone("This link has expired: ask for a new invitation."));
    }
    let existing = match &invitation.email {
        Some(email) => matches!(state.store.user_by_email(email).await, Ok(Some(_))),
        None => false,
    };
    Ok((
        Asking {
            token,
            email: None,
            existing,
        },
        invitation.email,
    ))
}

/// `POST /invitation/open`: the acceptance form for the token.
pub async fn open_invitation(
    State(state): State<AppState>,
    PageForm(form): PageForm<OpenForm>,
) -> Response {
    let (asking_for, email) = match asking(&state, &form.token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let asking_for = Asking {
        email: email.as_deref(),
        ..asking_for
    };
    let values = AcceptForm {
        token: String::new(),
        email: None,
        display_name: None,
        password: String::new(),
        confirm_password: None,
    };
    accept_page(StatusCode::OK, &asking_for, &values, None)
}

/// `POST /invitation`: join (and sign in).
pub async fn accept(
    State(state): State<AppState>,
    anonymous: Anonymous,
    uri: OriginalUri,
    PageForm(form): PageForm<AcceptForm>,
) -> Response {
    if let Err(refused) = posted_from_here(&state, &anonymous, &uri) {
        return refused.into_response();
    }
    let (asking_for, email) = match asking(&state, &form.token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let asking_for = Asking {
        email: email.as_deref(),
        ..asking_for
    };
    if !asking_for.existing && form.confirm_password.as_deref() != Some(form.password.as_str()) {
        return accept_page(
            StatusCode::BAD_REQUEST,
            &asking_for,
            &form,
            Some("The two passwords differ."),
        );
    }
    let body = invitations::AcceptRequest {
        token: form.token.clone(),
        password: form.password.clone(),
        display_name: form.display_name.clone(),
        email: if asking_for.email.is_none() {
            form.email.clone()
        } else {
            None
        },
    };
    match invitations::accept(State(state.clone()), anonymous, ApiJson(body)).await {
        Ok(answer) => see_other_keeping_cookies(&answer, "/keys"),
        Err(error) => accept_page(error.status(), &asking_for, &form, Some(&error.to_string())),
    }
}
