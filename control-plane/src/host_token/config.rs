//! The host-token configuration file: its format, its checks, and the errors naming the
//! issuer and field at fault.
//!
//! ```json
//! {
//!   "issuers": [
//!     {
//!       "issuer": "https://app.example.com",
//!       "audience": "keyplane",
//!       "algorithm": "HS256",
//!       "secret_env": "HOST_JWT_SECRET",
//!       "organization": "org_...",
//!       "provision_organizations": false,
//!       "claims": {"organization": "org", "role": "role", "permissions": "permissions",
//!                  "name": "name", "email": "email"},
//!       "leeway_seconds": 30
//!     }
//!   ]
//! }
//! ```
//!
//! - `algorithm`: `HS256`, `ES256` or `RS256`, pinned: tokens with any other `alg` are refused.
//! - Exactly one key source: `secret_env` (HS256 only; the environment variable holding the
//!   secret, at least [`MIN_SECRET_BYTES`] bytes; the secret is never in the file),
//!   `public_keys` (ES256/RS256: `[{"kid": "k1", "pem_file": "keys/k1.pem"}]`, paths relative
//!   to the file's directory, `kid` optional when there is one key; a PEM holding a private key
//!   is refused), or `jwks_url` (ES256/RS256; `https://`, or `http://` to `127.0.0.1`, `[::1]`
//!   or `localhost`).
//! - `organization`: the issuer may act only for this organization; absent, it is a
//!   deployment-wide issuer whose tokens name the organization.
//! - `provision_organizations` (default `false`): unknown organizations named are created.
//! - `claims`: the claim names read (the defaults shown); the user is always `sub`.
//! - `leeway_seconds`: on `exp` and `nbf`, default [`DEFAULT_LEEWAY_SECONDS`], at most
//!   [`MAX_LEEWAY_SECONDS`].
//!
//! Unknown fields are refused at every level, and issuers must be unique.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use zeroize::Zeroize as _;

// Defined with the claim checks that read them; also reachable here, next to the file format.
pub use super::claims::ClaimNames;
use super::jwks::{FETCH_TIMEOUT, JwksCache};
use super::{
    DEFAULT_LEEWAY_SECONDS, HostAlgorithm, Issuer, Keys, MAX_LEEWAY_SECONDS, MIN_SECRET_BYTES,
    NamedKey, usable,
};

/// Why the host-token configuration was refused. Messages never include a secret.
#[derive(Debug, thiserror::Error)]
pub enum HostTokenConfigError {
    /// The file could not be read.
    #[error("reading the host-token configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON of the expected shape (unknown fields included).
    #[error("parsing the host-token configuration: {0}")]
    Parse(#[from] serde_json::Error),
    /// A field that must not be empty is.
    #[error("issuer {issuer:?}: {field} must not be empty")]
    EmptyField {
        /// The issuer.
        issuer: String,
        /// The field.
        field: &'static str,
    },
    /// Two entries have the same issuer.
    #[error("issuer {issuer:?} is configured twice")]
    DuplicateIssuer {
        /// The issuer.
        issuer: String,
    },
    /// `algorithm` is not HS256, ES256 or RS256.
    #[error("issuer {issuer:?}: algorithm {algorithm:?} is not one of HS256, ES256, RS256")]
    UnsupportedAlgorithm {
        /// The issuer.
        issuer: String,
        /// The algorithm given.
        algorithm: String,
    },
    /// Not exactly one of `secret_env`, `public_keys`, `jwks_url`.
    #[error(
        "issuer {issuer:?}: exactly one of secret_env, public_keys, jwks_url must be given \
         (given: {given})"
    )]
    KeySources {
        /// The issuer.
        issuer: String,
        /// The ones given, or `none`.
        given: String,
    },
    /// A key source that does not fit the algorithm.
    #[error(
        "issuer {issuer:?}: {field} does not fit {algorithm} (HS256 takes secret_env; ES256 and \
         RS256 take public_keys or jwks_url)"
    )]
    KeySourceMismatch {
        /// The issuer.
        issuer: String,
        /// Its algorithm.
        algorithm: HostAlgorithm,
        /// The key source given.
        field: &'static str,
    },
    /// The `secret_env` variable is not set.
    #[error("issuer {issuer:?}: secret_env: the environment variable {variable} is not set")]
    SecretUnset {
        /// The issuer.
        issuer: String,
        /// The variable.
        variable: String,
    },
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "issuer {issuer:?}: secret_env: the secret in {variable} is {length} bytes, at least \
         {MIN_SECRET_BYTES} are needed"
    )]
    SecretTooShort {
        /// The issuer.
        issuer: String,
        /// The variable.
        variable: String,
        /// The secret's length.
        length: usize,
    },
    /// `public_keys` is an empty list.
    #[error("issuer {issuer:?}: public_keys is empty")]
    NoPublicKeys {
        /// The issuer.
        issuer: String,
    },
    /// A key without `kid` among several.
    #[error("issuer {issuer:?}: public_keys[{index}].kid is required when there are several keys")]
    KidRequired {
        /// The issuer.
        issuer: String,
        /// The key's position.
        index: usize,
    },
    /// Two keys with the same `kid`.
    #[error("issuer {issuer:?}: public_keys: kid {kid:?} is given twice")]
    DuplicateKid {
        /// The issuer.
        issuer: String,
        /// The kid.
        kid: String,
    },
    /// A PEM file could not be read.
    #[error("issuer {issuer:?}: public_keys: reading {}: {source}", path.display())]
    PemRead {
        /// The issuer.
        issuer: String,
        /// The file (resolved against the configuration's directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds a private key: `public_keys` takes the host product's public keys only.
    #[error(
        "issuer {issuer:?}: public_keys: {} holds a private key; give its public key (PEM \
         PUBLIC KEY) instead, the private key stays with the host product",
        path.display()
    )]
    PemPrivateKey {
        /// The issuer.
        issuer: String,
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no public key usable with the algorithm.
    #[error("issuer {issuer:?}: public_keys: {} is not a {algorithm} public key (PEM)", path.display())]
    PemInvalid {
        /// The issuer.
        issuer: String,
        /// The file.
        path: PathBuf,
        /// The issuer's algorithm.
        algorithm: HostAlgorithm,
    },
    /// `jwks_url` is not a URL Keyplane fetches.
    #[error("issuer {issuer:?}: jwks_url {url:?}: {reason}")]
    JwksUrl {
        /// The issuer.
        issuer: String,
        /// The URL given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// `leeway_seconds` is above [`MAX_LEEWAY_SECONDS`].
    #[error("issuer {issuer:?}: leeway_seconds {leeway} is above {MAX_LEEWAY_SECONDS}")]
    LeewayTooLarge {
        /// The issuer.
        issuer: String,
        /// The leeway given.
        leeway: u64,
    },
    /// The HTTP client for JWKS fetches could not be built.
    #[error("building the JWKS HTTP client: {0}")]
    HttpClient(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    issuers: Vec<IssuerFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFile {
    issuer: String,
    audience: String,
    algorithm: String,
    secret_env: Option<String>,
    public_keys: Option<Vec<PublicKeyFile>>,
    jwks_url: Option<String>,
    organization: Option<String>,
    #[serde(default)]
    provision_organizations: bool,
    #[serde(default)]
    claims: ClaimNames,
    leeway_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    kid: Option<String>,
    pem_file: PathBuf,
}

/// Parses and checks the configuration, loading keys and secrets.
pub(super) fn build(
    json: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Issuer>, HostTokenConfigError> {
    let file: FileConfig = serde_json::from_str(json)?;
    let mut seen = HashSet::new();
    let mut client = None;
    let mut issuers = Vec::with_capacity(file.issuers.len());
    for entry in file.issuers {
        if !seen.insert(entry.issuer.clone()) {
            return Err(HostTokenConfigError::DuplicateIssuer {
                issuer: entry.issuer,
            });
        }
        issuers.push(build_issuer(entry, base_dir, env, &mut client)?);
    }
    Ok(issuers)
}

fn build_issuer(
    entry: IssuerFile,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    client: &mut Option<reqwest::Client>,
) -> Result<Issuer, HostTokenConfigError> {
    let issuer = entry.issuer;
    let empty = |field| HostTokenConfigError::EmptyField {
        issuer: issuer.clone(),
        field,
    };
    if issuer.is_empty() {
        return Err(empty("issuer"));
    }
    if entry.audience.is_empty() {
        return Err(empty("audience"));
    }
    if entry.organization.as_deref() == Some("") {
        return Err(empty("organization"));
    }
    let claims = entry.claims;
    for (field, name) in [
        ("claims.organization", &claims.organization),
        ("claims.role", &claims.role),
        ("claims.permissions", &claims.permissions),
        ("claims.name", &claims.name),
        ("claims.email", &claims.email),
    ] {
        if name.is_empty() {
            return Err(empty(field));
        }
    }
    let leeway = entry.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS);
    if leeway > MAX_LEEWAY_SECONDS {
        return Err(HostTokenConfigError::LeewayTooLarge { issuer, leeway });
    }
    let algorithm = HostAlgorithm::from_name(&entry.algorithm).ok_or_else(|| {
        HostTokenConfigError::UnsupportedAlgorithm {
            issuer: issuer.clone(),
            algorithm: entry.algorithm.clone(),
        }
    })?;

    let given: Vec<&'static str> = [
        entry.secret_env.as_ref().map(|_| "secret_env"),
        entry.public_keys.as_ref().map(|_| "public_keys"),
        entry.jwks_url.as_ref().map(|_| "jwks_url"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        return Err(HostTokenConfigError::KeySources {
            issuer,
            given: if given.is_empty() {
                "none".to_owned()
            } else {
                given.join(", ")
            },
        });
    }
    let mismatch = |field| HostTokenConfigError::KeySourceMismatch {
        issuer: issuer.clone(),
        algorithm,
        field,
    };
    let keys = match (
        algorithm,
        entry.secret_env,
        entry.public_keys,
        entry.jwks_url,
    ) {
        (HostAlgorithm::Hs256, Some(variable), _, _) => secret_key(&issuer, variable, env)?,
        (HostAlgorithm::Hs256, None, Some(_), _) => return Err(mismatch("public_keys")),
        (HostAlgorithm::Hs256, None, None, _) => return Err(mismatch("jwks_url")),
        (_, Some(_), _, _) => return Err(mismatch("secret_env")),
        (_, None, Some(files), _) => pem_keys(&issuer, algorithm, files, base_dir)?,
        (_, None, None, Some(url)) => {
            let url = jwks_url(&issuer, &url)?;
            let client = match client {
                Some(client) => client.clone(),
                None => client.insert(http_client()?).clone(),
            };
            Keys::Jwks(Box::new(JwksCache::new(
                issuer.clone(),
                url,
                algorithm,
                client,
            )))
        }
        (_, None, None, None) => {
            return Err(HostTokenConfigError::KeySources {
                issuer,
                given: "none".to_owned(),
            });
        }
    };
    Ok(Issuer {
        issuer,
        audience: entry.audience,
        algorithm,
        keys,
        organization: entry.organization,
        provision_organizations: entry.provision_organizations,
        claims,
        leeway: i64::try_from(leeway).unwrap_or(i64::MAX),
    })
}

fn secret_key(
    issuer: &str,
    variable: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Keys, HostTokenConfigError> {
    if variable.is_empty() {
        return Err(HostTokenConfigError::EmptyField {
            issuer: issuer.to_owned(),
            field: "secret_env",
        });
    }
    let Some(mut secret) = env(&variable) else {
        return Err(HostTokenConfigError::SecretUnset {
            issuer: issuer.to_owned(),
            variable,
        });
    };
    let length = secret.len();
    let key = if length < MIN_SECRET_BYTES {
        None
    } else {
        DecodingKey::from_secret(secret.as_bytes()).ok()
    };
    secret.zeroize();
    let Some(key) = key else {
        return Err(HostTokenConfigError::SecretTooShort {
            issuer: issuer.to_owned(),
            variable,
            length,
        });
    };
    Ok(Keys::Fixed(Arc::from([NamedKey { kid: None, key }])))
}

/// What every PEM label of a private key contains (`PRIVATE KEY`, `EC PRIVATE KEY`,
/// `RSA PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`).
const PRIVATE_KEY: &[u8] = b"PRIVATE KEY";

fn pem_keys(
    issuer: &str,
    algorithm: HostAlgorithm,
    files: Vec<PublicKeyFile>,
    base_dir: &Path,
) -> Result<Keys, HostTokenConfigError> {
    if files.is_empty() {
        return Err(HostTokenConfigError::NoPublicKeys {
            issuer: issuer.to_owned(),
        });
    }
    let several = files.len() > 1;
    let mut kids = HashSet::new();
    let mut keys = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        match &file.kid {
            None if several => {
                return Err(HostTokenConfigError::KidRequired {
                    issuer: issuer.to_owned(),
                    index,
                });
            }
            Some(kid) if kid.is_empty() => {
                return Err(HostTokenConfigError::EmptyField {
                    issuer: issuer.to_owned(),
                    field: "public_keys[].kid",
                });
            }
            Some(kid) if !kids.insert(kid.clone()) => {
                return Err(HostTokenConfigError::DuplicateKid {
                    issuer: issuer.to_owned(),
                    kid: kid.clone(),
                });
            }
            _ => {}
        }
        let path = base_dir.join(&file.pem_file);
        let pem = std::fs::read(&path).map_err(|source| HostTokenConfigError::PemRead {
            issuer: issuer.to_owned(),
            path: path.clone(),
            source,
        })?;
        // The crypto backend takes no private key as a public one (that would be `PemInvalid`),
        // but the operator who gave one is told so: the signing key belongs at the host only.
        if pem
            .windows(PRIVATE_KEY.len())
            .any(|window| window == PRIVATE_KEY)
        {
            return Err(HostTokenConfigError::PemPrivateKey {
                issuer: issuer.to_owned(),
                path,
            });
        }
        let key = match algorithm {
            HostAlgorithm::Es256 => DecodingKey::from_ec_pem(&pem).ok(),
            HostAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&pem).ok(),
            HostAlgorithm::Hs256 => None,
        }
        .filter(|key| usable(key, algorithm));
        let Some(key) = key else {
            return Err(HostTokenConfigError::PemInvalid {
                issuer: issuer.to_owned(),
                path,
                algorithm,
            });
        };
        keys.push(NamedKey { kid: file.kid, key });
    }
    Ok(Keys::Fixed(Arc::from(keys)))
}

fn jwks_url(issuer: &str, url: &str) -> Result<reqwest::Url, HostTokenConfigError> {
    let refuse = |reason| HostTokenConfigError::JwksUrl {
        issuer: issuer.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse("not a URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(parsed),
        "http" if matches!(host, "127.0.0.1" | "[::1]" | "localhost") => Ok(parsed),
        _ => Err(refuse(
            "must be https:// (http:// only to 127.0.0.1, [::1] or localhost)",
        )),
    }
}

/// The JWKS client, built like the pusher's: rustls with the ring provider, no redirects.
fn http_client() -> Result<reqwest::Client, HostTokenConfigError> {
    crate::fetched_keys::http_client(FETCH_TIMEOUT).map_err(HostTokenConfigError::HttpClient)
}
