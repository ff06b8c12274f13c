//! The claims of a token whose signature has verified: the issuer, time (`exp`, `nbf`),
//! audience, subject and organization checks, in that order, and the [`HostClaims`] they
//! produce.
//!
//! Claims are read from the payload's JSON object under the names the issuer configures
//! ([`ClaimNames`], the configuration's `claims`); a claim of the wrong JSON type is
//! [`HostTokenError::InvalidClaim`], never coerced.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{HostTokenError, Issuer};

/// What a verified token says about its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClaims {
    /// The issuer (`iss`), one of the configured ones.
    pub issuer: String,
    /// The user at the host product (`sub`), never empty.
    pub subject: String,
    /// The name claim, else the subject.
    pub display_name: String,
    /// The email claim, when present.
    pub email: Option<String>,
    /// The organization the user acts for: the organization claim, or the issuer's pinned
    /// organization (which the claim, when present, equals).
    pub organization: String,
    /// Whether the organization comes from the issuer's configuration (a per-organization
    /// issuer) rather than from a deployment-wide issuer's token.
    pub pinned_organization: bool,
    /// Whether the issuer may have unknown organizations created (`provision_organizations`).
    pub provision_organizations: bool,
    /// The role claim, when present.
    pub role: Option<String>,
    /// The permissions claim (an array of strings), when present.
    pub permissions: Option<Vec<String>>,
    /// `exp`, in Unix seconds.
    pub expires_at: i64,
}

/// The claim names read from tokens (the user is always `sub`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    /// The organization the user acts for (default `org`).
    pub organization: String,
    /// The user's role (default `role`).
    pub role: String,
    /// The user's permissions, an array of strings (default `permissions`).
    pub permissions: String,
    /// The user's display name (default `name`).
    pub name: String,
    /// The user's email (default `email`).
    pub email: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            organization: "org".to_owned(),
            role: "role".to_owned(),
            permissions: "permissions".to_owned(),
            name: "name".to_owned(),
            email: "email".to_owned(),
        }
    }
}

/// What a verified token says when it stands for its issuer's back end rather than one user
/// (`POST /v1/portal/sessions`): the same checks, but the organization claim is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The issuer (`iss`), one of the configured ones.
    pub issuer: String,
    /// The token's subject (`sub`), never empty.
    pub subject: String,
    /// The organization the token is confined to, if any: the organization claim, or the
    /// issuer's pinned organization.
    pub organization: Option<String>,
    /// Whether the issuer is pinned to one organization.
    pub pinned_organization: bool,
    /// Whether the issuer may have unknown organizations created (`provision_organizations`).
    pub provision_organizations: bool,
    /// The role claim, when present.
    pub role: Option<String>,
    /// The permissions claim (an array of strings), when present.
    pub permissions: Option<Vec<String>>,
    /// The name claim, when present.
    pub name: Option<String>,
    /// The email claim, when present.
    pub email: Option<String>,
    /// `exp`, in Unix seconds.
    pub expires_at: i64,
}

impl Issuer {
    /// The claim checks, once the signature is verified.
    pub(super) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<HostClaims, HostTokenError> {
        let checked = self.check_service_claims(claims, now, true)?;
        let organization = checked
            .organization
            .ok_or(HostTokenError::MissingClaim("organization"))?;
        Ok(HostClaims {
            issuer: checked.issuer,
            display_name: checked.name.unwrap_or_else(|| checked.subject.clone()),
            subject: checked.subject,
            email: checked.email,
            organization,
            pinned_organization: checked.pinned_organization,
            provision_organizations: checked.provision_organizations,
            role: checked.role,
            permissions: checked.permissions,
            expires_at: checked.expires_at,
        })
    }

    /// The claim checks, in order; the organization claim is required only when
    /// `require_organization` (a deployment-wide issuer's user token).
    pub(super) fn check_service_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
        require_organization: bool,
    ) -> Result<ServiceClaims, HostTokenError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(HostTokenError::UnknownIssuer);
        }
        let expires_at = numeric_date(claims, "exp")?.ok_or(HostTokenError::MissingClaim("exp"))?;
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(HostTokenError::Expired);
        }
        if let Some(not_before) = numeric_date(claims, "nbf")?
            && not_before > now.saturating_add(self.leeway)
        {
            return Err(HostTokenError::NotYetValid);
        }
        self.check_audience(claims.get("aud"))?;
        let subject =
            optional_string(claims, "sub", "sub")?.ok_or(HostTokenError::MissingClaim("sub"))?;
        let named = optional_string(claims, &self.claims.organization, "organization")?;
        let (organization, pinned_organization) = match (&self.organization, named) {
            (Some(pinned), None) => (Some(pinned.clone()), true),
            (Some(pinned), Some(named)) if *pinned == named => (Some(named), true),
            (Some(_), Some(_)) => return Err(HostTokenError::WrongOrganization),
            (None, Some(named)) => (Some(named), false),
            (None, None) if require_organization => {
                return Err(HostTokenError::MissingClaim("organization"));
            }
            (None, None) => (None, false),
        };
        Ok(ServiceClaims {
            issuer: self.issuer.clone(),
            subject,
            organization,
            pinned_organization,
            provision_organizations: self.provision_organizations,
            name: optional_string(claims, &self.claims.name, "name")?,
            email: optional_string(claims, &self.claims.email, "email")?,
            role: optional_string(claims, &self.claims.role, "role")?,
            permissions: string_list(claims, &self.claims.permissions, "permissions")?,
            expires_at,
        })
    }

    fn check_audience(&self, aud: Option<&Value>) -> Result<(), HostTokenError> {
        let listed = match aud {
            None | Some(Value::Null) => return Err(HostTokenError::MissingClaim("aud")),
            Some(Value::String(one)) => *one == self.audience,
            Some(Value::Array(many)) => {
                let mut found = false;
                for entry in many {
                    let entry = entry.as_str().ok_or(HostTokenError::InvalidClaim("aud"))?;
                    found |= entry == self.audience;
                }
                found
            }
            Some(_) => return Err(HostTokenError::InvalidClaim("aud")),
        };
        if listed {
            Ok(())
        } else {
            Err(HostTokenError::WrongAudience)
        }
    }
}

/// A NumericDate claim (integer or fractional seconds, truncated), if present.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, HostTokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_i64() {
                return Ok(Some(seconds));
            }
            match number.as_f64() {
                Some(seconds) if seconds.is_finite() && seconds.abs() < 1e15 => {
                    Ok(Some(seconds.floor() as i64))
                }
                _ => Err(HostTokenError::InvalidClaim(name)),
            }
        }
        Some(_) => Err(HostTokenError::InvalidClaim(name)),
    }
}

/// A string claim; absent, null or empty is `None`.
fn optional_string(
    claims: &Map<String, Value>,
    claim: &str,
    label: &'static str,
) -> Result<Option<String>, HostTokenError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if value.is_empty() => Ok(None),
        Some(Value::String(value)) => storable(value, label).map(|value| Some(value.to_owned())),
        Some(_) => Err(HostTokenError::InvalidClaim(label)),
    }
}

/// The longest text claim taken, in bytes: the subject is stored and indexed as the host
/// product's user id (the portal's links take as long), and no name, email, organization or
/// role is longer.
pub const MAX_CLAIM_BYTES: usize = 255;

/// `value` as a text claim may be kept: at most [`MAX_CLAIM_BYTES`], no control characters
/// (they are stored as they are, and PostgreSQL's text cannot hold a NUL).
fn storable<'a>(value: &'a str, label: &'static str) -> Result<&'a str, HostTokenError> {
    if value.len() > MAX_CLAIM_BYTES || value.chars().any(char::is_control) {
        return Err(HostTokenError::InvalidClaim(label));
    }
    Ok(value)
}

/// An array-of-strings claim; absent or null is `None`.
fn string_list(
    claims: &Map<String, Value>,
    claim: &str,
    label: &'static str,
) -> Result<Option<Vec<String>>, HostTokenError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| {
                value
                    .as_str()
                    .ok_or(HostTokenError::InvalidClaim(label))
                    .and_then(|value| storable(value, label))
                    .map(str::to_owned)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(HostTokenError::InvalidClaim(label)),
    }
}
