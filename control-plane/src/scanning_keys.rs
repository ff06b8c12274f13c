//! The public keys a secret-scanning provider (GitHub) signs its leak reports with, and the
//! check of a report's signature: ECDSA P-256 with SHA-256 over the raw body, the signature
//! base64 of its DER form, the key named by its identifier.
//!
//! The keys are in the provider's own format (GitHub's
//! `https://api.github.com/meta/public_keys/secret_scanning` answer):
//! `{"public_keys": [{"key_identifier", "key": "-----BEGIN PUBLIC KEY-----…", "is_current"}]}`,
//! read from a file once ([`ScanningKeySource::Fixed`]) or fetched from that URL
//! ([`ScanningKeySource::Fetched`]: cached for [`MAX_AGE_SECONDS`], fetched again at once for a
//! report naming a key not held — the provider rotated — at most every ten minutes, and the
//! last good set kept when a fetch fails, by [`crate::fetched_keys`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use thiserror::Error;

use crate::fetched_keys::{FetchedKeys, Refresh, http_client};

/// A fetched set older than this is fetched again (seconds): an hour.
pub const MAX_AGE_SECONDS: i64 = 3600;
/// The least time between two fetches (seconds): ten minutes. A report naming a key not held
/// fetches again, and anyone can post one (the signature is checked after), so at most six
/// such fetches an hour reach GitHub, well within its limit for an address; GitHub publishes
/// a new key before signing with it, and the hourly refresh picks it up.
pub const MIN_REFETCH_SECONDS: i64 = 600;
/// A fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest document read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why the keys could not be read.
#[derive(Debug, Error)]
pub enum ScanningKeysError {
    /// The file could not be read.
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    /// It is not the provider's format.
    #[error(
        "not a list of public keys (`{{\"public_keys\": [{{\"key_identifier\", \"key\"}}]}}`): {0}"
    )]
    Format(String),
    /// A key is not a P-256 public key in PEM.
    #[error("the key {0} is not a P-256 public key in PEM")]
    Key(String),
    /// The URL is not one to fetch keys from.
    #[error("{0} is not an https:// URL (http:// only with --local-dev)")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<PublicKeyEntry>,
}

#[derive(Deserialize)]
struct PublicKeyEntry {
    key_identifier: String,
    key: String,
}

/// The provider's keys, by identifier.
#[derive(Debug, Clone, Default)]
pub struct ScanningKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl ScanningKeys {
    /// Reads the keys from `path`.
    pub fn load(path: &Path) -> Result<Self, ScanningKeysError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ScanningKeysError::Read(path.display().to_string(), error))?;
        Self::parse(&text)
    }

    /// Reads the keys from the provider's JSON.
    pub fn parse(json: &str) -> Result<Self, ScanningKeysError> {
        let list: KeyList = serde_json::from_str(json)
            .map_err(|error| ScanningKeysError::Format(error.to_string()))?;
        let mut keys = Vec::with_capacity(list.public_keys.len());
        for entry in list.public_keys {
            let key = VerifyingKey::from_public_key_pem(entry.key.trim())
                .map_err(|_| ScanningKeysError::Key(entry.key_identifier.clone()))?;
            keys.push((entry.key_identifier, key));
        }
        Ok(ScanningKeys { keys })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key is named `identifier`.
    pub fn holds(&self, identifier: &str) -> bool {
        self.keys.iter().any(|(id, _)| id == identifier)
    }

    /// Whether `signature` (base64 of DER) is the key `identifier`'s signature of `body`.
    pub fn verify(&self, identifier: &str, signature: &str, body: &[u8]) -> bool {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == identifier) else {
            return false;
        };
        let Ok(der) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = DerSignature::try_from(der.as_slice()) else {
            return false;
        };
        key.verify(body, &signature).is_ok()
    }
}

/// Where the provider's keys come from.
#[derive(Debug)]
pub enum ScanningKeySource {
    /// A file, read once at start.
    Fixed(ScanningKeys),
    /// The provider's URL.
    Fetched(Box<FetchedKeys<ScanningKeys>>),
}

impl ScanningKeySource {
    /// The keys named by `setting`: an `https://` URL (`http://` too when `local_dev`), or a
    /// file's path, read now.
    pub fn from_setting(setting: &str, local_dev: bool) -> Result<Self, ScanningKeysError> {
        let is_url = setting.starts_with("https://") || setting.starts_with("http://");
        if !is_url {
            return Ok(ScanningKeySource::Fixed(ScanningKeys::load(Path::new(
                setting,
            ))?));
        }
        let url = reqwest::Url::parse(setting)
            .ok()
            .filter(|url| url.scheme() == "https" || local_dev)
            .ok_or_else(|| ScanningKeysError::Url(setting.to_owned()))?;
        let client = http_client(FETCH_TIMEOUT).map_err(ScanningKeysError::Client)?;
        let refresh = Refresh {
            max_age_seconds: MAX_AGE_SECONDS,
            min_refetch_seconds: MIN_REFETCH_SECONDS,
            max_body_bytes: MAX_BODY_BYTES,
        };
        let parse = Box::new(|body: &[u8]| -> Result<Arc<ScanningKeys>, String> {
            let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
            let keys = ScanningKeys::parse(text).map_err(|error| error.to_string())?;
            if keys.is_empty() {
                return Err("the document holds no key".into());
            }
            Ok(Arc::new(keys))
        });
        Ok(ScanningKeySource::Fetched(Box::new(FetchedKeys::new(
            "GitHub secret-scanning keys".into(),
            url,
            client,
            refresh,
            parse,
        ))))
    }

    /// Whether `signature` is the key `identifier`'s signature of `body` at `now` (Unix
    /// seconds); `None` when the keys were never fetched (so nothing can be checked).
    pub async fn verify(
        &self,
        identifier: &str,
        signature: &str,
        body: &[u8],
        now: i64,
    ) -> Option<bool> {
        match self {
            ScanningKeySource::Fixed(keys) => Some(keys.verify(identifier, signature, body)),
            ScanningKeySource::Fetched(fetched) => {
                let keys = fetched.keys(|keys| !keys.holds(identifier), now).await?;
                Some(keys.verify(identifier, signature, body))
            }
        }
    }

    /// Once no fetch is under way.
    #[cfg(test)]
    pub(crate) async fn settled(&self) {
        if let ScanningKeySource::Fetched(fetched) = self {
            fetched.settled().await;
        }
    }

    /// A line for the start-up log: how many keys were read, or where they will be fetched.
    pub fn describe(&self) -> String {
        match self {
            ScanningKeySource::Fixed(keys) => format!("{} keys from a file", keys.len()),
            ScanningKeySource::Fetched(fetched) => format!("keys fetched from {}", fetched.url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    use super::*;

    fn keys_for(signing: &SigningKey, identifier: &str) -> ScanningKeys {
        let pem = signing
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("PEM");
        let json = serde_json::json!({"public_keys": [{"key_identifier": identifier, "key": pem, "is_current": true}]});
        ScanningKeys::parse(&json.to_string()).expect("parses")
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_body() {
        let signing = SigningKey::from_slice(&[7; 32]).expect("key");
        let keys = keys_for(&signing, "abc");
        let body = br#"[{"token":"x","type":"keyplane","url":"u","source":"content"}]"#;
        let signature: DerSignature = signing.sign(body);
        let text = STANDARD.encode(signature.as_bytes());
        assert!(keys.verify("abc", &text, body));
        assert!(!keys.verify("other", &text, body));
        assert!(!keys.verify("abc", &text, b"[]"));
        assert!(!keys.verify("abc", "not base64!", body));
        let impostor = SigningKey::from_slice(&[8; 32]).expect("key");
        let forged: DerSignature = impostor.sign(body);
        assert!(!keys.verify("abc", &STANDARD.encode(forged.as_bytes()), body));
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        assert!(matches!(
            ScanningKeys::parse("[]"),
            Err(ScanningKeysError::Format(_))
        ));
        let bad = r#"{"public_keys": [{"key_identifier": "k1", "key": "nope"}]}"#;
        assert!(matches!(
            ScanningKeys::parse(bad),
            Err(ScanningKeysError::Key(id)) if id == "k1"
        ));
    }

    fn list_of(signing: &SigningKey, identifier: &str) -> serde_json::Value {
        let pem = signing
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("PEM");
        serde_json::json!({"public_keys": [{"key_identifier": identifier, "key": pem, "is_current": true}]})
    }

    fn signature(signing: &SigningKey, body: &[u8]) -> String {
        let signature: DerSignature = signing.sign(body);
        STANDARD.encode(signature.as_bytes())
    }

    const T0: i64 = 1_800_000_000;

    #[tokio::test]
    async fn fetched_keys_are_cached_for_an_hour_refetched_for_a_new_key_and_kept_when_a_fetch_fails()
     {
        use crate::fetched_keys::document_server::DocumentServer;
        let (a, b) = (
            SigningKey::from_slice(&[7; 32]).expect("key"),
            SigningKey::from_slice(&[8; 32]).expect("key"),
        );
        let server = DocumentServer::start(list_of(&a, "a")).await;
        let source =
            ScanningKeySource::from_setting(&server.url("/keys"), true).expect("a URL source");
        let body = b"[]";
        let (by_a, by_b) = (signature(&a, body), signature(&b, body));
        // Fetched on first use.
        assert_eq!(source.verify("a", &by_a, body, T0).await, Some(true));
        assert_eq!(server.requests(), 1);
        // A key not held: fetched again, but at most once in ten minutes.
        assert_eq!(source.verify("b", &by_b, body, T0 + 10).await, Some(false));
        assert_eq!(server.requests(), 1);
        assert_eq!(source.verify("b", &by_b, body, T0 + 601).await, Some(false));
        assert_eq!(server.requests(), 2);
        assert_eq!(source.verify("b", &by_b, body, T0 + 900).await, Some(false));
        assert_eq!(server.requests(), 2);
        // Cached for an hour from the last fetch.
        let fetched = T0 + 601;
        assert_eq!(
            source.verify("a", &by_a, body, fetched + 3599).await,
            Some(true)
        );
        assert_eq!(server.requests(), 2);
        // An hour on, the provider is down: the last good set still verifies.
        server.set_down(true);
        let failed = fetched + 3600;
        assert_eq!(source.verify("a", &by_a, body, failed).await, Some(true));
        source.settled().await;
        assert_eq!(server.requests(), 3);
        // It rotates to b: a report signed by b is accepted once ten minutes have passed since
        // the last attempt; a is no longer trusted.
        server.set_down(false);
        server.serve(list_of(&b, "b"));
        assert_eq!(
            source.verify("b", &by_b, body, failed + 300).await,
            Some(false)
        );
        assert_eq!(server.requests(), 3);
        let rotated = failed + 601;
        assert_eq!(source.verify("b", &by_b, body, rotated).await, Some(true));
        assert_eq!(server.requests(), 4);
        assert_eq!(
            source.verify("a", &by_a, body, rotated + 1).await,
            Some(false)
        );
        // A document that is not a key list keeps the keys held too.
        server.serve(serde_json::json!({"public_keys": "nope"}));
        assert_eq!(
            source.verify("b", &by_b, body, rotated + 3600).await,
            Some(true)
        );
        source.settled().await;
        assert_eq!(server.requests(), 5);
    }

    #[tokio::test]
    async fn keys_never_fetched_verify_nothing_and_a_url_must_be_https_outside_local_development() {
        use crate::fetched_keys::document_server::DocumentServer;
        let server = DocumentServer::start(serde_json::json!({})).await;
        server.set_down(true);
        let source = ScanningKeySource::from_setting(&server.url("/keys"), true).expect("source");
        assert_eq!(source.verify("a", "sig", b"[]", T0).await, None);
        assert!(matches!(
            ScanningKeySource::from_setting(&server.url("/keys"), false),
            Err(ScanningKeysError::Url(_))
        ));
        assert!(
            ScanningKeySource::from_setting(
                "https://api.github.com/meta/public_keys/secret_scanning",
                false
            )
            .is_ok()
        );
        assert!(matches!(
            ScanningKeySource::from_setting("/no/such/file.json", false),
            Err(ScanningKeysError::Read(..))
        ));
    }

    #[tokio::test]
    async fn a_document_over_64_kib_is_not_taken_and_the_keys_held_stay() {
        use crate::fetched_keys::document_server::DocumentServer;
        let (a, b) = (
            SigningKey::from_slice(&[7; 32]).expect("key"),
            SigningKey::from_slice(&[8; 32]).expect("key"),
        );
        let server = DocumentServer::start(list_of(&a, "a")).await;
        let source = ScanningKeySource::from_setting(&server.url("/keys"), true).expect("source");
        let body = b"[]";
        assert_eq!(
            source.verify("a", &signature(&a, body), body, T0).await,
            Some(true)
        );
        // A valid list of b, padded past the bound: read, it would replace a.
        let mut padded = list_of(&b, "b");
        padded["padding"] = serde_json::json!("x".repeat(MAX_BODY_BYTES));
        server.serve(padded);
        let later = T0 + MAX_AGE_SECONDS;
        assert_eq!(
            source.verify("b", &signature(&b, body), body, later).await,
            Some(false)
        );
        assert_eq!(server.requests(), 2);
        assert_eq!(
            source.verify("a", &signature(&a, body), body, later).await,
            Some(true)
        );
    }
}
