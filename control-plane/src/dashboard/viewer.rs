//! Who is looking at a dashboard page, and how a form post proves it came from one.
//!
//! - [`Viewer`]: a page request with a valid session cookie (the dashboard's or the portal's);
//!   without one the person is sent to `/sign-in` (the portal to its "This session has ended" page).
//! - [`Submitted`]: a form post. The session's CSRF token travels in the form's hidden `csrf`
//!   field and is checked exactly as the API checks the `x-csrf-token` header (with the
//!   request's `Origin`): the field is moved into that header and the same [`Principal`]
//!   extractor decides. A post without a session, with a wrong token or from another origin is
//!   refused before the handler runs.
//!
//! - [`posted_from_here`]: the same origin rule for the forms posted without a session.
//!
//! Both carry the [`Principal`] the API handlers take, so every page acts through the same
//! authorization, validation and audit trail as the REST API.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use serde::de::DeserializeOwned;

use super::failure::PageError;
use super::security::FramingSlot;
use crate::auth::session::{self, CSRF_HEADER};
use crate::auth::{Actor, Principal, Via};
use crate::state::AppState;
use crate::store::SessionKind;

/// The branding a page is drawn with.
#[derive(Debug, Clone, Default)]
pub struct Look {
    /// The organization's name as shown.
    pub org_name: String,
    /// Its logo, if set.
    pub logo_url: Option<String>,
    /// Its accent colour (`#rrggbb`), if set.
    pub accent: Option<String>,
    /// Origins allowed to frame the portal.
    pub frame_ancestors: Vec<String>,
}

/// A signed-in person looking at a page.
pub struct Viewer {
    /// Who, where, allowed to do what.
    pub principal: Principal,
    /// The session's CSRF token, for the forms on the page.
    pub csrf: String,
    /// The organization's look.
    pub look: Look,
    /// Whether this is an embedded portal session.
    pub portal: bool,
    /// Where the portal's "back" link goes.
    pub return_url: Option<String>,
}

impl Viewer {
    /// The person's display name.
    pub fn name(&self) -> &str {
        self.principal
            .person()
            .map_or("", |person| person.display_name.as_str())
    }
}

async fn viewer_of(parts: &mut Parts, state: &AppState) -> Result<Viewer, PageError> {
    let Some(cookie) = session::presented(&parts.headers) else {
        return Err(PageError::SignIn);
    };
    let principal = Principal::from_request_parts(parts, state)
        .await
        .map_err(|error| PageError::from_auth(error, cookie.kind == SessionKind::Portal))?;
    // The session that signed the request in (the other cookie's, when the first was over).
    let kind = match &principal.actor {
        Actor::User {
            via: Via::Session(session),
            ..
        } => session.kind,
        _ => cookie.kind,
    };
    let portal = kind == SessionKind::Portal;
    if portal && !is_portal_page(parts.uri.path()) {
        // The portal is the key pages: the team's and the deployment's pages are not there,
        // whatever the member's role (their links are not shown, nor are the pages served).
        return Err(PageError::Api(crate::error::ApiError::NotFound("page")));
    }
    let csrf = session::csrf_token_of(&parts.headers, kind, state).unwrap_or_default();
    let return_url = match &principal.actor {
        Actor::User {
            via: Via::Session(session),
            ..
        } => session_return_url(session),
        _ => None,
    };
    let look = look_of(state, &principal).await?;
    if portal && let Some(slot) = parts.extensions.get::<FramingSlot>() {
        slot.allow(&look.frame_ancestors);
    }
    Ok(Viewer {
        principal,
        csrf,
        look,
        portal,
        return_url,
    })
}

/// Whether a portal session may open `path`: the key pages (`/keys`, `/keys/…`), and
/// `/sign-out` (the button every page shows).
fn is_portal_page(path: &str) -> bool {
    path == "/keys" || path.starts_with("/keys/") || path == "/sign-out"
}

fn session_return_url(session: &crate::store::SessionRecord) -> Option<String> {
    session.return_url.clone()
}

/// The organization's look: its branding (its name until branding is set).
pub async fn look_of(state: &AppState, principal: &Principal) -> Result<Look, PageError> {
    let branding = state.store.branding(principal.org).await?;
    Ok(Look {
        org_name: branding.display_name,
        logo_url: branding.logo_url,
        accent: branding.accent_color,
        frame_ancestors: branding.frame_ancestors,
    })
}

/// Refuses (403, as a forged form) an unauthenticated form post — sign-in, joining, entering
/// the portal — that did not come from one of this deployment's pages (no login CSRF).
pub fn posted_from_here(
    state: &AppState,
    anonymous: &crate::auth::Anonymous,
    uri: &axum::extract::OriginalUri,
) -> Result<(), PageError> {
    if session::same_origin_of(&anonymous.headers, &uri.0, &state.public_url) {
        Ok(())
    } else {
        Err(PageError::Api(crate::error::ApiError::CsrfFailed))
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        viewer_of(parts, state).await
    }
}

/// A form post from a signed-in person's page: the viewer and the form's fields.
pub struct Submitted<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// The fields.
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        if parts.method != Method::POST {
            return Err(PageError::Api(crate::error::ApiError::MethodNotAllowed));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|_| PageError::BadForm("the form could not be read".into()))?;
        let field: CsrfField = serde_html_form::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        // The form's token stands in for the header the API reads; a header already present
        // (a script posting the form) is replaced, never combined.
        let token = HeaderValue::from_str(&field.csrf).unwrap_or(HeaderValue::from_static(""));
        parts.headers.insert(CSRF_HEADER, token);
        let viewer = viewer_of(&mut parts, state).await?;
        let form = serde_html_form::from_bytes(&bytes)
            .map_err(|error| PageError::BadForm(error.to_string()))?;
        Ok(Submitted { viewer, form })
    }
}
