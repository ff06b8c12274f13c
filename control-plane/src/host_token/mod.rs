//! Host-product tokens: verifying the JWTs a SaaS product embedding Keyplane signs for its users.
//!
//! A host product authenticates its users to the management API with
//! `Authorization: Bearer <JWT>`. The operator lists the issuers Keyplane trusts in a JSON file
//! (its path in [`ENV_VAR`]; format in [`config`]), and [`HostTokens::verify`] turns a token into
//! [`HostClaims`] or a [`HostTokenError`]:
//!
//! 1. the token is at most [`MAX_TOKEN_BYTES`] long and is three base64url parts;
//! 2. its (unverified) `iss` selects the issuer's configuration; nothing else is tried;
//! 3. its header's `alg` must be that issuer's pinned algorithm exactly (`none`, or HS256 for an
//!    RS256/ES256 issuer, is refused before any key is looked at); a `crit` header is refused;
//!    `jku`, `x5u`, `jwk` headers are ignored, never fetched or trusted;
//! 4. the key: a token's `kid` must name one of the issuer's keys (a key configured without a
//!    `kid` is the issuer's only key and takes any token); a token without `kid` is accepted only
//!    when the issuer has exactly one key. JWKS issuers ([`jwks`]) refetch on an unknown `kid`,
//!    at most once per [`jwks::MIN_REFETCH_SECONDS`];
//! 5. the signature, with that key and algorithm only;
//! 6. then the claims, against the `now` the caller passes (never the system clock) with the
//!    issuer's leeway: `iss` equal to the issuer, `exp` required, `nbf` when present, `aud`
//!    (string or array) containing the audience, `sub` non-empty, and the organization claim
//!    (required, unless the issuer is pinned to one organization: then absent or equal to it).

mod claims;
pub mod config;
pub mod jwks;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub use claims::{ClaimNames, HostClaims, MAX_CLAIM_BYTES, ServiceClaims};
pub use config::HostTokenConfigError;

/// The environment variable naming the host-token configuration file.
pub const ENV_VAR: &str = "KEYPLANE_HOST_TOKENS";

/// The longest token accepted; longer ones are refused before being parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The leeway on `exp` and `nbf` when the configuration gives none, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// The largest leeway the configuration may give, in seconds.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// A signing algorithm an issuer may be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub enum HostAlgorithm {
    /// HMAC with SHA-256, a secret shared with the host product.
    #[serde(rename = "HS256")]
    Hs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl HostAlgorithm {
    /// The name used in JWT headers and in the configuration (`HS256`, `ES256`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            HostAlgorithm::Hs256 => "HS256",
            HostAlgorithm::Es256 => "ES256",
            HostAlgorithm::Rs256 => "RS256",
        }
    }

    /// The algorithm named `name` exactly (case-sensitive), if it is one of the three.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(HostAlgorithm::Hs256),
            "ES256" => Some(HostAlgorithm::Es256),
            "RS256" => Some(HostAlgorithm::Rs256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            HostAlgorithm::Hs256 => Algorithm::HS256,
            HostAlgorithm::Es256 => Algorithm::ES256,
            HostAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for HostAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was refused. The message names the check, never the token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostTokenError {
    /// Not three base64url parts of JSON objects, or a header without `alg` or with `crit`.
    #[error("the token is malformed")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Its `iss` is no configured issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// Its `alg` is not the algorithm its issuer is pinned to.
    #[error("the token's algorithm is not the one its issuer uses")]
    AlgorithmNotAllowed,
    /// Its `kid` names no key of its issuer, or it has none and the issuer has several keys.
    #[error("the token's key is not one of its issuer's keys")]
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` does not contain the issuer's audience.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// A required claim is absent (or empty).
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("the token's {0} claim has the wrong type")]
    InvalidClaim(&'static str),
    /// The token names an organization other than the one its issuer is pinned to.
    #[error("the token names an organization its issuer may not act for")]
    WrongOrganization,
    /// The issuer's JWKS could not be fetched and no keys are held.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
}

impl HostTokenError {
    /// A stable snake_case code, for API error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            HostTokenError::Malformed => "malformed",
            HostTokenError::TooLarge => "too_large",
            HostTokenError::UnknownIssuer => "unknown_issuer",
            HostTokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            HostTokenError::UnknownKey => "unknown_key",
            HostTokenError::BadSignature => "bad_signature",
            HostTokenError::Expired => "expired",
            HostTokenError::NotYetValid => "not_yet_valid",
            HostTokenError::WrongAudience => "wrong_audience",
            HostTokenError::MissingClaim(_) => "missing_claim",
            HostTokenError::InvalidClaim(_) => "invalid_claim",
            HostTokenError::WrongOrganization => "wrong_organization",
            HostTokenError::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// A configured issuer as `GET /v1/auth/config` may show it: no key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IssuerSummary {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must contain.
    pub audience: String,
    /// The one algorithm accepted.
    pub algorithm: HostAlgorithm,
    /// The organization it is pinned to, if any.
    pub organization: Option<String>,
    /// Whether unknown organizations its tokens name are created.
    pub provision_organizations: bool,
}

/// A verification key and the `kid` it is known by (none: the issuer's only key).
#[derive(Clone)]
pub(crate) struct NamedKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
}

/// The key for a token's `kid` (see the module documentation for the rule).
pub(crate) fn select<'a>(keys: &'a [NamedKey], kid: Option<&str>) -> Option<&'a DecodingKey> {
    if let [only] = keys
        && (only.kid.is_none() || kid.is_none() || only.kid.as_deref() == kid)
    {
        return Some(&only.key);
    }
    let kid = kid?;
    keys.iter()
        .find(|named| named.kid.as_deref() == Some(kid))
        .map(|named| &named.key)
}

/// Whether the crypto backend can build a verifier from `key` for `algorithm` (an EC key on
/// another curve cannot be used for ES256, for instance). The probe signature never verifies.
pub(crate) fn usable(key: &DecodingKey, algorithm: HostAlgorithm) -> bool {
    jsonwebtoken::crypto::verify("", b"", key, algorithm.jwt()).is_ok()
}

/// Where an issuer's keys come from.
enum Keys {
    /// The HS256 secret or the configured PEM keys.
    Fixed(Arc<[NamedKey]>),
    /// A JWKS, fetched and cached.
    Jwks(Box<jwks::JwksCache>),
}

/// One trusted issuer, checked and ready.
struct Issuer {
    issuer: String,
    audience: String,
    algorithm: HostAlgorithm,
    keys: Keys,
    organization: Option<String>,
    provision_organizations: bool,
    claims: ClaimNames,
    leeway: i64,
}

/// The trusted host-product issuers and the verification of their tokens.
pub struct HostTokens {
    /// In the configuration file's order.
    issuers: Vec<Issuer>,
    /// Issuer name to index in `issuers`.
    by_name: HashMap<String, usize>,
}

#[cfg(test)]
impl HostTokens {
    /// Once no issuer's JWKS fetch is under way (a refresh started behind a token has ended).
    pub(crate) async fn settled(&self) {
        for issuer in &self.issuers {
            if let Keys::Jwks(cache) = &issuer.keys {
                cache.settled().await;
            }
        }
    }
}

impl fmt::Debug for HostTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The summaries hold no key material; secrets and keys are never printed.
        f.debug_struct("HostTokens")
            .field("issuers", &self.issuers())
            .finish()
    }
}

impl HostTokens {
    /// Reads the configuration file at `path` (PEM paths relative to its directory), taking
    /// HS256 secrets from the process environment.
    pub fn load(path: &Path) -> Result<Self, HostTokenConfigError> {
        let json = std::fs::read_to_string(path).map_err(|source| HostTokenConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Self::from_json(&json, base_dir, |name| std::env::var(name).ok())
    }

    /// Builds from the configuration's text; PEM paths are relative to `base_dir`, and `env`
    /// looks up the environment variables that hold HS256 secrets.
    pub fn from_json(
        json: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, HostTokenConfigError> {
        let issuers = config::build(json, base_dir, &env)?;
        let by_name = issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| (issuer.issuer.clone(), index))
            .collect();
        Ok(HostTokens { issuers, by_name })
    }

    /// No issuer configured: every token is refused ([`HostTokenError::UnknownIssuer`]).
    pub fn none() -> Self {
        HostTokens {
            issuers: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The configured issuers, in the file's order, without key material.
    pub fn issuers(&self) -> Vec<IssuerSummary> {
        self.issuers
            .iter()
            .map(|issuer| IssuerSummary {
                issuer: issuer.issuer.clone(),
                audience: issuer.audience.clone(),
                algorithm: issuer.algorithm,
                organization: issuer.organization.clone(),
                provision_organizations: issuer.provision_organizations,
            })
            .collect()
    }

    /// Verifies `token` at `now_unix_seconds` (see the module documentation for the checks,
    /// in order). Only a JWKS issuer's key lookup may wait on the network.
    pub async fn verify(
        &self,
        token: &str,
        now_unix_seconds: i64,
    ) -> Result<HostClaims, HostTokenError> {
        let (issuer, claims) = self.verified_payload(token, now_unix_seconds).await?;
        issuer.check_claims(&claims, now_unix_seconds)
    }

    /// Verifies a token that stands for its issuer's back end (asking for portal links): the
    /// same checks as [`HostTokens::verify`], but a deployment-wide issuer's token may leave
    /// the organization claim out, and then acts for any of the issuer's organizations.
    pub async fn verify_service(
        &self,
        token: &str,
        now_unix_seconds: i64,
    ) -> Result<ServiceClaims, HostTokenError> {
        let (issuer, claims) = self.verified_payload(token, now_unix_seconds).await?;
        issuer.check_service_claims(&claims, now_unix_seconds, false)
    }

    /// Checks 1 to 5 (size, shape, issuer, algorithm, key, signature): the issuer and the
    /// payload whose claims are still to be checked.
    async fn verified_payload(
        &self,
        token: &str,
        now_unix_seconds: i64,
    ) -> Result<(&Issuer, Map<String, Value>), HostTokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(HostTokenError::TooLarge);
        }
        let parts = Parts::split(token)?;
        let header: RawHeader = decode_json(parts.header)?;
        let claims: Map<String, Value> = decode_json(parts.payload)?;
        let issuer = match claims.get("iss") {
            Some(Value::String(name)) => self
                .by_name
                .get(name)
                .and_then(|&index| self.issuers.get(index))
                .ok_or(HostTokenError::UnknownIssuer)?,
            Some(_) => return Err(HostTokenError::InvalidClaim("iss")),
            None => return Err(HostTokenError::MissingClaim("iss")),
        };
        if header.alg != issuer.algorithm.as_str() {
            return Err(HostTokenError::AlgorithmNotAllowed);
        }
        if header.crit.is_some() {
            return Err(HostTokenError::Malformed);
        }
        let kid = header.kid.as_deref();
        let keys = match &issuer.keys {
            Keys::Fixed(keys) => Arc::clone(keys),
            Keys::Jwks(cache) => cache.keys(kid, now_unix_seconds).await?,
        };
        let key = select(&keys, kid).ok_or(HostTokenError::UnknownKey)?;
        let verified = jsonwebtoken::crypto::verify(
            parts.signature,
            parts.message.as_bytes(),
            key,
            issuer.algorithm.jwt(),
        );
        if !matches!(verified, Ok(true)) {
            return Err(HostTokenError::BadSignature);
        }
        Ok((issuer, claims))
    }
}

/// A compact JWS's parts, still encoded.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, what the signature covers.
    message: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, HostTokenError> {
        let mut pieces = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (pieces.next(), pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(HostTokenError::Malformed);
        };
        let message = token
            .get(..header.len() + 1 + payload.len())
            .ok_or(HostTokenError::Malformed)?;
        Ok(Parts {
            header,
            payload,
            signature,
            message,
        })
    }
}

/// The header fields looked at; others (`typ`, `jku`, `x5u`, `jwk`, ...) are ignored.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, HostTokenError> {
    let bytes = BASE64URL
        .decode(part)
        .map_err(|_| HostTokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| HostTokenError::Malformed)
}
