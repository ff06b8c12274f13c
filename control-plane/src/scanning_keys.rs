//! The public keys a secret-scanning provider (GitHub) signs its leak reports with, and the
//! check of a report's signature: ECDSA P-256 with SHA-256 over the raw body, the signature
//! base64 of its DER form, the key named by its identifier.
//!
//! The keys are read from a file in the provider's own format (GitHub's
//! `https://api.github.com/meta/public_keys/secret_scanning` answer):
//! `{"public_keys": [{"key_identifier", "key": "-----BEGIN PUBLIC KEY-----…", "is_current"}]}`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use thiserror::Error;

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
}
