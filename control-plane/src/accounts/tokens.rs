//! The secret tokens of sessions and invitations: 32 bytes from the OS CSPRNG, written as
//! base64url. Only their SHA-256 digest is stored, so the database alone cannot be used to
//! sign in or to accept an invitation. A session's CSRF token is derived from its token with
//! the deployment's signing secret (nothing more to store) and compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A fresh secret token.
pub fn generate() -> Result<SecretString, getrandom::Error> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// What the database stores for a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Derives CSRF tokens from session tokens.
#[derive(Clone)]
pub struct CsrfKey(Hmac<Sha256>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(<secret>)")
    }
}

impl CsrfKey {
    /// The key for the deployment's signing secret (domain-separated from its other uses).
    pub fn new(signing_secret: &[u8]) -> Self {
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(signing_secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        derive.update(b"keyplane session csrf v1");
        let key = derive.finalize().into_bytes();
        CsrfKey(
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
        )
    }

    /// The CSRF token of the session whose token is `session_token`.
    pub fn token_for(&self, session_token: &SecretString) -> String {
        let mut mac = self.0.clone();
        mac.update(session_token.expose_secret().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is that session's CSRF token (constant time).
    pub fn verify(&self, session_token: &SecretString, presented: &str) -> bool {
        let expected = self.token_for(session_token);
        expected.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_digest_is_kept() {
        let first = generate().expect("CSPRNG");
        let second = generate().expect("CSPRNG");
        assert_ne!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 43);
        assert_ne!(
            digest(first.expose_secret()),
            digest(second.expose_secret())
        );
    }

    #[test]
    fn a_csrf_token_belongs_to_one_session_and_one_deployment() {
        let key = CsrfKey::new(b"a signing secret of at least thirty-two bytes");
        let session = generate().expect("CSPRNG");
        let other = generate().expect("CSPRNG");
        let token = key.token_for(&session);
        assert!(key.verify(&session, &token));
        assert!(!key.verify(&other, &token));
        assert!(!key.verify(&session, ""));
        let elsewhere = CsrfKey::new(b"another signing secret, also thirty-two bytes");
        assert!(!elsewhere.verify(&session, &token));
    }
}
