//! A host product's JWKS: fetched, parsed, cached, and refreshed without hammering the host.
//!
//! - Keys are fetched on first use, and again when the cache is older than
//!   [`MAX_AGE_SECONDS`] or a token names a `kid` the cache does not hold.
//! - Fetches of one issuer's JWKS are at least [`MIN_REFETCH_SECONDS`] apart whatever their
//!   reason, so tokens with random `kid`s (or a host that is down) cause at most one request
//!   per interval.
//! - A failed fetch (transport, status other than 200, body over [`MAX_BODY_BYTES`], no usable
//!   key) keeps the keys held and logs a warning; [`HostTokenError::KeysUnavailable`] is
//!   answered only when no key is held at all.
//! - Time is the `now` passed to [`HostTokens::verify`](super::HostTokens::verify), so tests
//!   move it.
//! - Usable keys: `kty` `RSA` (`n`, `e`) for RS256 and `kty` `EC`, `crv` `P-256` (`x`, `y`)
//!   for ES256; keys of another type or curve, with an `alg` other than the issuer's, or with
//!   `use` other than `sig`, are ignored (symmetric `oct` keys are never taken).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::{HostAlgorithm, HostTokenError, NamedKey, select, usable};

/// Keys older than this are refetched (seconds).
pub const MAX_AGE_SECONDS: i64 = 10 * 60;

/// The least time between two fetches of one issuer's JWKS (seconds).
pub const MIN_REFETCH_SECONDS: i64 = 30;

/// A fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most keys kept from one document.
pub const MAX_KEYS: usize = 32;

/// One issuer's JWKS and what is known of it.
pub(crate) struct JwksCache {
    issuer: String,
    url: reqwest::Url,
    algorithm: HostAlgorithm,
    client: reqwest::Client,
    /// Held across a fetch: concurrent verifications wait for it rather than fetch too.
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    keys: Option<Arc<[NamedKey]>>,
    /// When `keys` were fetched.
    fetched_at: Option<i64>,
    /// When a fetch was last tried, successful or not.
    attempted_at: Option<i64>,
}

impl JwksCache {
    /// A cache that fetches nothing until first asked.
    pub(crate) fn new(
        issuer: String,
        url: reqwest::Url,
        algorithm: HostAlgorithm,
        client: reqwest::Client,
    ) -> Self {
        JwksCache {
            issuer,
            url,
            algorithm,
            client,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The keys to look `kid` up in at `now`, fetching first when the cache is stale or lacks
    /// `kid`, and the last fetch is at least [`MIN_REFETCH_SECONDS`] old.
    pub(crate) async fn keys(
        &self,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Arc<[NamedKey]>, HostTokenError> {
        let mut state = self.state.lock().await;
        // A clock that moved back counts as time passed: abs_diff, not a subtraction.
        let stale = state
            .fetched_at
            .is_none_or(|at| now.abs_diff(at) >= MAX_AGE_SECONDS.unsigned_abs());
        let lacks_kid = state
            .keys
            .as_deref()
            .is_none_or(|keys| select(keys, kid).is_none());
        let may_fetch = state
            .attempted_at
            .is_none_or(|at| now.abs_diff(at) >= MIN_REFETCH_SECONDS.unsigned_abs());
        if (stale || lacks_kid) && may_fetch {
            state.attempted_at = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::debug!(issuer = %self.issuer, keys = keys.len(), "host-token JWKS fetched");
                    state.keys = Some(Arc::from(keys));
                    state.fetched_at = Some(now);
                }
                Err(reason) => tracing::warn!(
                    issuer = %self.issuer,
                    url = %self.url,
                    %reason,
                    keys_held = state.keys.as_deref().map_or(0, <[NamedKey]>::len),
                    "fetching the host-token JWKS failed; keeping the keys held"
                ),
            }
        }
        state.keys.clone().ok_or(HostTokenError::KeysUnavailable)
    }

    /// One fetch: the usable keys, or why there are none.
    async fn fetch(&self) -> Result<Vec<NamedKey>, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| transport(&error))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(format!("the document is over {MAX_BODY_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| transport(&error))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("the document is over {MAX_BODY_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse(&body, self.algorithm)?;
        if keys.is_empty() {
            return Err(format!(
                "the document holds no usable {} key",
                self.algorithm
            ));
        }
        Ok(keys)
    }
}

fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {FETCH_TIMEOUT:?}");
    }
    // reqwest's own message is generic ("error sending request"); the causes say why.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Value>,
}

/// The fields of a JWK looked at.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The usable keys of a JWKS document (at most [`MAX_KEYS`]; the first of a repeated `kid`).
pub(crate) fn parse(body: &[u8], algorithm: HostAlgorithm) -> Result<Vec<NamedKey>, String> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|error| format!("not a JWKS document: {error}"))?;
    let mut keys: Vec<NamedKey> = Vec::new();
    for value in set.keys {
        // One odd key (another type, a malformed field) does not spoil the others.
        let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
            continue;
        };
        let Some(key) = decoding_key(&jwk, algorithm) else {
            continue;
        };
        if keys.iter().any(|held| held.kid == jwk.kid) {
            continue;
        }
        keys.push(NamedKey { kid: jwk.kid, key });
        if keys.len() == MAX_KEYS {
            break;
        }
    }
    Ok(keys)
}

fn decoding_key(jwk: &RawJwk, algorithm: HostAlgorithm) -> Option<DecodingKey> {
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig")
        || jwk
            .alg
            .as_deref()
            .is_some_and(|alg| alg != algorithm.as_str())
        || jwk.kid.as_deref() == Some("")
    {
        return None;
    }
    let key = match (algorithm, jwk.kty.as_str()) {
        (HostAlgorithm::Rs256, "RSA") => {
            DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?
        }
        (HostAlgorithm::Es256, "EC") if jwk.crv.as_deref() == Some("P-256") => {
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            let coordinate = |value: &str| BASE64URL.decode(value).ok().filter(|b| b.len() == 32);
            coordinate(x)?;
            coordinate(y)?;
            DecodingKey::from_ec_components(x, y).ok()?
        }
        _ => return None,
    };
    usable(&key, algorithm).then_some(key)
}
