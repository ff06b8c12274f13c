//! The people API: who am I (`/v1/users/me`), signing in and out (`/v1/sessions`), members
//! (`/v1/members`), roles (`/v1/roles`), invitations (`/v1/invitations`), which ways of
//! signing in this deployment accepts (`/v1/auth/config`), and the operators' view of every
//! organization and edge (`/v1/operator/…`); and the hourly cleanup of spent sessions and
//! portal links ([`cleanup`]).
//!
//! Cross-organization probes answer 404: a member id, role or session of another organization
//! is not found, exactly like one that does not exist.

pub mod cleanup;
pub mod invitations;
pub mod me;
pub mod members;
pub mod operator;
pub mod roles;
pub mod sessions;
pub mod views;

use keyplane_shared::ids::UserId;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::limits::MAX_EMAIL_LEN;
use crate::state::AppState;

/// The people routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(me::router())
        .merge(sessions::router())
        .merge(members::router())
        .merge(roles::router())
        .merge(invitations::router())
        .merge(operator::router())
}

/// Reads a user id from the path; a malformed id names nobody, so it is a 404.
fn user_id(text: &str) -> Result<UserId, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound("member"))
}

/// A normalized email: trimmed, lowercased, and shaped like one (`local@domain`, at most
/// [`MAX_EMAIL_LEN`] bytes).
pub fn email(text: &str) -> Result<String, ApiError> {
    let email = text.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::InvalidRequest(
            "`email` must be an email address".into(),
        ))
    }
}

/// A display name: 1 to 100 characters, no control characters.
pub fn display_name(text: &str) -> Result<String, ApiError> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "`display_name` must be 1 to 100 characters without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::openapi::patterns::{email_pattern, strings};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_email_of_the_documents_pattern_is_taken(text in strings(&email_pattern())) {
            prop_assume!(text.len() <= MAX_EMAIL_LEN);
            prop_assert!(email(&text).is_ok(), "{text}");
        }
    }
}
