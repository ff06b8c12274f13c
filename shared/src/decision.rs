//! The edge's verdict on one request: allow with an identity, or deny with 401 / 403 / 429.
//!
//! Order: the credential presented ([`credential`]: `x-api-key`, else `Authorization: Bearer`; a
//! key in any other form of `Authorization` is refused) → route requirement → format and
//! checksum → digest (each pepper, current first) → table lookup → status, expiry, environment →
//! scopes → rate limit. No step reads a clock or does I/O: the caller passes `now` and owns the
//! limiter state.
//!
//! Every failure to find a usable key for the presented string — malformed, bad checksum, unknown,
//! a wrong secret, an environment this edge refuses — is the same [`Denial::InvalidKey`], so a
//! caller cannot tell which it was.

use core::fmt;

pub mod credential;

pub use credential::Presented;

use crate::digest::PepperSet;
use crate::ids::{KeyId, OrgId};
use crate::key::{Environment, KeyPrefix, KeyText};
use crate::policy::{Requirement, RoutePolicy};
use crate::ratelimit::{RateLimit, RateLimitOutcome, RateLimiter};
use crate::scope::Scope;
use crate::table::{EntryRef, KeyStatus, KeyTable};
use crate::time::Timestamp;

/// The parts of a request the decision looks at. `Debug` shows whether credentials are
/// present, never their text.
#[derive(Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The `x-api-key` header, if present.
    pub x_api_key: Option<&'a str>,
    /// The `Authorization` header, if present.
    pub authorization: Option<&'a str>,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path (a query string is ignored); the policy reads it in its canonical
    /// form (see `path`), which is the form the edge forwards.
    pub path: &'a str,
}

impl fmt::Debug for RequestFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let presence = |header: Option<&str>| {
            if header.is_some() {
                "<present>"
            } else {
                "<absent>"
            }
        };
        f.debug_struct("RequestFacts")
            .field("x_api_key", &format_args!("{}", presence(self.x_api_key)))
            .field(
                "authorization",
                &format_args!("{}", presence(self.authorization)),
            )
            .field("method", &self.method)
            .field("path", &self.path)
            .finish()
    }
}

/// Which environments an edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptedEnvironments {
    /// Live and test keys.
    #[default]
    Both,
    /// Only live keys (a production edge).
    LiveOnly,
    /// Only test keys (a staging edge).
    TestOnly,
}

impl AcceptedEnvironments {
    /// Whether a key of `env` is accepted.
    pub fn accepts(self, env: Environment) -> bool {
        match self {
            AcceptedEnvironments::Both => true,
            AcceptedEnvironments::LiveOnly => env == Environment::Live,
            AcceptedEnvironments::TestOnly => env == Environment::Test,
        }
    }
}

/// An edge's configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The deployment's key prefix.
    pub prefix: KeyPrefix,
    /// Peppers to digest presented keys with.
    pub peppers: PepperSet,
    /// Environments this edge accepts.
    pub environments: AcceptedEnvironments,
    /// Which scopes each route needs.
    pub policy: RoutePolicy,
    /// The limit for keys without their own.
    pub default_rate_limit: RateLimit,
}

/// Who is calling, attached to allowed requests. Owned: the table it came from may change
/// while the request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The key's id.
    pub key_id: KeyId,
    /// Its organization.
    pub org_id: OrgId,
    /// Its environment.
    pub env: Environment,
    /// Its scopes, in their text form (space-separated, as the origin receives them).
    pub scopes: String,
    /// The rate-limit check that admitted the request.
    pub rate_limit: RateLimitOutcome,
}

/// The realm every Keyplane challenge names (the edge's and the control plane's).
pub const REALM: &str = "keyplane";

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No key was presented (401, bare challenge).
    MissingKey,
    /// The presented string is not a usable key here (401 `invalid_api_key`).
    InvalidKey,
    /// The key's expiry has passed (401 `expired_api_key`).
    ExpiredKey,
    /// The key was revoked (401 `revoked_api_key`).
    RevokedKey,
    /// The key lacks a scope the route needs (403 `insufficient_scope`).
    InsufficientScope {
        /// The first required scope the key does not hold.
        required: Scope,
    },
    /// Over the key's rate limit (429 `rate_limited`).
    RateLimited(RateLimitOutcome),
}

impl Denial {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::MissingKey | Denial::InvalidKey | Denial::ExpiredKey | Denial::RevokedKey => {
                401
            }
            Denial::InsufficientScope { .. } => 403,
            Denial::RateLimited(_) => 429,
        }
    }

    /// The `error.code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingKey => "missing_api_key",
            Denial::InvalidKey => "invalid_api_key",
            Denial::ExpiredKey => "expired_api_key",
            Denial::RevokedKey => "revoked_api_key",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::RateLimited(_) => "rate_limited",
        }
    }

    /// The `error.message` of the JSON body.
    pub fn message(&self) -> String {
        match self {
            Denial::MissingKey => {
                "No API key was provided. Send it in the x-api-key header or as Authorization: Bearer <key>.".into()
            }
            Denial::InvalidKey => "The API key is not valid.".into(),
            Denial::ExpiredKey => "The API key has expired.".into(),
            Denial::RevokedKey => "The API key has been revoked.".into(),
            Denial::InsufficientScope { required } => format!("The API key lacks the required scope `{required}`."),
            Denial::RateLimited(outcome) => {
                format!("Rate limit exceeded. Retry after {} seconds.", outcome.retry_after_secs())
            }
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750) for 401 and 403 answers.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        let challenge = |error: &str, description: &str| {
            format!(r#"Bearer realm="{realm}", error="{error}", error_description="{description}""#)
        };
        match self {
            Denial::MissingKey => Some(format!(r#"Bearer realm="{realm}""#)),
            Denial::InvalidKey => Some(challenge("invalid_token", "The API key is not valid")),
            Denial::ExpiredKey => Some(challenge("invalid_token", "The API key has expired")),
            Denial::RevokedKey => Some(challenge("invalid_token", "The API key has been revoked")),
            Denial::InsufficientScope { required } => Some(format!(
                r#"Bearer realm="{realm}", error="insufficient_scope", scope="{required}""#
            )),
            Denial::RateLimited(_) => None,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A public route: forward without identity.
    AllowPublic,
    /// Forward with this identity.
    Allow(Identity),
    /// Answer with this refusal.
    Deny {
        /// Why.
        denial: Denial,
        /// The key, when the presented string was found in the table (for usage records;
        /// never shown to the caller).
        key: Option<(KeyId, OrgId)>,
    },
}

/// The credential a request carries: `x-api-key`, else a Bearer token
/// ([`credential::bearer_token`]). Empty values count as absent. The edge reads credentials
/// with [`credential::presented`], which also refuses a key in any other form.
pub fn extract_key<'a>(facts: &RequestFacts<'a>) -> Option<&'a str> {
    if let Some(key) = facts.x_api_key.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(key);
    }
    facts.authorization.and_then(credential::bearer_token)
}

/// A presented key that passed every check but the rate limit. Owned, so the rate limit can
/// be counted after the table is released (in the isolate, or by a shared counter elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The key's id.
    pub key_id: KeyId,
    /// Its organization.
    pub org_id: OrgId,
    /// Its environment.
    pub env: Environment,
    /// Its scopes, in their text form.
    pub scopes: String,
    /// The limit that applies: the key's own, else the edge's default.
    pub limit: RateLimit,
}

impl Authorized {
    /// Finishes the decision with the rate limiter's answer for this key (from the isolate's
    /// [`RateLimiter`], or from a shared counter elsewhere).
    pub fn admit(self, outcome: RateLimitOutcome) -> Decision {
        if !outcome.allowed {
            return Decision::Deny {
                denial: Denial::RateLimited(outcome),
                key: Some((self.key_id, self.org_id)),
            };
        }
        Decision::Allow(Identity {
            key_id: self.key_id,
            org_id: self.org_id,
            env: self.env,
            scopes: self.scopes,
            rate_limit: outcome,
        })
    }
}

/// The decision up to the rate limit, which the caller applies where its counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// A public route: forward without identity, count nothing.
    Public,
    /// Refused before the rate limit.
    Denied {
        /// Why.
        denial: Denial,
        /// The key, when the presented string was found in the table (for usage records;
        /// never shown to the caller).
        key: Option<(KeyId, OrgId)>,
    },
    /// Everything but the rate limit passed.
    Authorized(Authorized),
}

/// The table's entry for a presented key, and the environment the key names; `None` when the
/// text is not a well-formed key with a valid checksum, or no pepper's digest of it is in the
/// table. What the `parse_digest_lookup_1m` benchmark measures.
///
/// The text is checked where it lies in the request: the secret is not copied.
pub fn look_up<'t>(
    presented: &str,
    prefix: &KeyPrefix,
    peppers: &PepperSet,
    table: &'t KeyTable,
) -> Option<(EntryRef<'t>, Environment)> {
    let key = KeyText::check(presented, prefix).ok()?;
    let entry = peppers
        .iter()
        .find_map(|pepper| table.get(&pepper.digest_text(&key)))?;
    Some((entry, key.environment()))
}

/// Every check but the rate limit: the credential presented (an unreadable one is an invalid
/// key, on any route), route requirement, format and checksum, lookup, environment, status,
/// expiry, scopes.
pub fn authorize(
    facts: &RequestFacts<'_>,
    now: Timestamp,
    config: &EdgeConfig,
    table: &KeyTable,
) -> Authorization {
    let denied =
        |denial: Denial, key: Option<(KeyId, OrgId)>| Authorization::Denied { denial, key };
    let presented = match credential::presented(facts, &config.prefix) {
        Presented::Unreadable => return denied(Denial::InvalidKey, None),
        Presented::Nothing => None,
        Presented::Key(text) => Some(text),
    };
    let requirement = config.policy.requirement(facts.method, facts.path);
    let required = match &*requirement {
        Requirement::Public => return Authorization::Public,
        Requirement::Scopes(required) => required,
    };
    let Some(presented) = presented else {
        return denied(Denial::MissingKey, None);
    };
    let Some((entry, key_env)) = look_up(presented, &config.prefix, &config.peppers, table) else {
        return denied(Denial::InvalidKey, None);
    };
    let found = Some((entry.key_id(), entry.org_id()));
    if !config.environments.accepts(entry.env()) || entry.env() != key_env {
        return denied(Denial::InvalidKey, found);
    }
    if entry.status() == KeyStatus::Revoked {
        return denied(Denial::RevokedKey, found);
    }
    if entry.expires_at().is_some_and(|expiry| now >= expiry) {
        return denied(Denial::ExpiredKey, found);
    }
    if let Some(missing) = entry.scopes().first_missing(required) {
        let denial = Denial::InsufficientScope {
            required: missing.clone(),
        };
        return denied(denial, found);
    }
    Authorization::Authorized(Authorized {
        key_id: entry.key_id(),
        org_id: entry.org_id(),
        env: entry.env(),
        scopes: entry.scopes().to_string(),
        limit: entry.rate_limit().unwrap_or(config.default_rate_limit),
    })
}

/// Decides one request, counting it in `limiter`: [`authorize`], then [`Authorized::admit`]
/// with the limiter's answer. The edge decides every request this way when it counts in the
/// isolate (the global mode counts elsewhere between the two steps).
pub fn decide(
    facts: &RequestFacts<'_>,
    now: Timestamp,
    config: &EdgeConfig,
    table: &KeyTable,
    limiter: &mut RateLimiter,
) -> Decision {
    match authorize(facts, now, config, table) {
        Authorization::Public => Decision::AllowPublic,
        Authorization::Denied { denial, key } => Decision::Deny { denial, key },
        Authorization::Authorized(authorized) => {
            let outcome = limiter.check(authorized.key_id, authorized.limit, now);
            authorized.admit(outcome)
        }
    }
}

#[cfg(test)]
mod tests;
