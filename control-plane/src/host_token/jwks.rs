//! A host product's JWKS: fetched, parsed, cached, and refreshed without hammering the host
//! (the cache is [`crate::fetched_keys`]; this module says which JWKs are taken).
//!
//! - Keys are fetched on first use, and again when the cache is older than
//!   [`MAX_AGE_SECONDS`] (behind the token that finds it so, which is checked against the
//!   keys held) or a token names a `kid` the cache does not hold (that token waits).
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

use super::{HostAlgorithm, HostTokenError, NamedKey, select, usable};
use crate::fetched_keys::{FetchedKeys, Refresh};

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

/// One issuer's JWKS.
pub(crate) struct JwksCache {
    keys: FetchedKeys<[NamedKey]>,
}

impl JwksCache {
    /// A cache that fetches nothing until first asked.
    pub(crate) fn new(
        issuer: String,
        url: reqwest::Url,
        algorithm: HostAlgorithm,
        client: reqwest::Client,
    ) -> Self {
        let refresh = Refresh {
            max_age_seconds: MAX_AGE_SECONDS,
            min_refetch_seconds: MIN_REFETCH_SECONDS,
            max_body_bytes: MAX_BODY_BYTES,
        };
        let parse = Box::new(move |body: &[u8]| -> Result<Arc<[NamedKey]>, String> {
            let keys = parse(body, algorithm)?;
            if keys.is_empty() {
                return Err(format!("the document holds no usable {algorithm} key"));
            }
            Ok(Arc::from(keys))
        });
        JwksCache {
            keys: FetchedKeys::new(
                format!("host-token JWKS of {issuer}"),
                url,
                client,
                refresh,
                parse,
            ),
        }
    }

    /// The keys to look `kid` up in at `now`: fetched first when the cache lacks `kid` (and
    /// the last fetch is at least [`MIN_REFETCH_SECONDS`] old, or one is under way); refreshed
    /// behind the caller when it is only stale.
    pub(crate) async fn keys(
        &self,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Arc<[NamedKey]>, HostTokenError> {
        self.keys
            .keys(|keys| select(keys, kid).is_none(), now)
            .await
            .ok_or(HostTokenError::KeysUnavailable)
    }
}

#[cfg(test)]
impl JwksCache {
    /// Once no fetch is under way.
    pub(crate) async fn settled(&self) {
        self.keys.settled().await;
    }
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
