//! Webhook signing secrets and signatures, by the Standard Webhooks convention. They live with
//! the deployment's secrets they are derived from (below the state and the store, which both
//! use them); the webhooks module sends what they sign.
//!
//! A secret is `whsec_` + base64 of 32 bytes; those bytes are the HMAC-SHA256 key. They are not
//! stored anywhere: each is derived from the deployment's signing secret and the endpoint's
//! random salt ([`WebhookSecrets::secret`]), so the database holds nothing a reader could sign
//! with, and the secret can be shown again by nobody — it is shown once, when made.
//!
//! A delivery carries `webhook-id` (the event's id), `webhook-timestamp` (Unix seconds of the
//! attempt) and `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! and during the 24 hours after a rotation a second one with the previous secret, separated by
//! a space, so a receiver holding either secret accepts it (one more for each secret replaced
//! in the 24 hours before, up to `store::webhooks::MAX_PREVIOUS_SECRETS`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

use keyplane_shared::Timestamp;

/// Length of an endpoint's secret salt, in bytes.
pub const SALT_LEN: usize = 32;

/// The prefix of a signing secret's text.
pub const SECRET_PREFIX: &str = "whsec_";

/// Derives endpoints' signing secrets from the deployment's signing secret.
#[derive(Clone)]
pub struct WebhookSecrets(Hmac<Sha256>);

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecrets(<secret>)")
    }
}

impl WebhookSecrets {
    /// The deriver for the deployment's signing secret (domain-separated from its other uses).
    pub fn new(signing_secret: &[u8]) -> Self {
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(signing_secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        derive.update(b"keyplane webhook secrets v1");
        let root = derive.finalize().into_bytes();
        WebhookSecrets(
            <Hmac<Sha256> as KeyInit>::new_from_slice(&root)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
        )
    }

    /// The HMAC key of the secret with `salt`.
    fn key(&self, salt: &[u8; SALT_LEN]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(salt);
        mac.finalize().into_bytes().into()
    }

    /// The secret with `salt`, as shown to its owner (`whsec_…`).
    pub fn secret(&self, salt: &[u8; SALT_LEN]) -> SecretString {
        SecretString::from(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(self.key(salt))
        ))
    }

    /// The `webhook-signature` header of `body` sent as event `id` at `timestamp` (seconds)
    /// at `now` to an endpoint with secret `salt` and the `previous` salts of its rotations
    /// (each signing until its time): the secret's signature, then one for each previous
    /// secret that still signs.
    pub fn signature_header(
        &self,
        salt: &[u8; SALT_LEN],
        previous: &[([u8; SALT_LEN], Timestamp)],
        signed: (&str, i64, &str),
        now: Timestamp,
    ) -> String {
        let (id, timestamp, body) = signed;
        let mut header = signature(&self.key(salt), id, timestamp, body);
        for (previous, _) in previous.iter().filter(|(_, until)| now < *until) {
            header.push(' ');
            header.push_str(&signature(&self.key(previous), id, timestamp, body));
        }
        header
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The HMAC key a `whsec_…` secret stands for (what a receiver does with it), if well formed.
pub fn key_of(secret: &SecretString) -> Option<Vec<u8>> {
    let text = secret.expose_secret();
    STANDARD.decode(text.strip_prefix(SECRET_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let key = key_of(&secret).expect("well formed");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_differ_by_salt_and_deployment_and_round_trip_to_their_key() {
        let secrets = WebhookSecrets::new(&[1; 32]);
        let one = secrets.secret(&[1; SALT_LEN]);
        let two = secrets.secret(&[2; SALT_LEN]);
        let elsewhere = WebhookSecrets::new(&[2; 32]).secret(&[1; SALT_LEN]);
        assert_ne!(one.expose_secret(), two.expose_secret());
        assert_ne!(one.expose_secret(), elsewhere.expose_secret());
        assert!(one.expose_secret().starts_with(SECRET_PREFIX));
        assert_eq!(
            key_of(&one).expect("well formed"),
            secrets.key(&[1; SALT_LEN]).to_vec()
        );
    }
}
