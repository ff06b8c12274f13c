//! Argon2id, the at-rest verifier of every key and every local account's password, run on
//! tokio's blocking pool so the async worker threads never stall on it (one hash costs tens
//! of milliseconds of CPU by design).
//!
//! Parameters are argon2's defaults, which are OWASP's recommendation for Argon2id:
//! m = 19 MiB, t = 2, p = 1. The PHC string stores them, so a later change of defaults keeps
//! old hashes verifiable.
//!
//! Memory is bounded: at most one computation per core (8 at most) runs at once
//! ([`HashingPermits`]), each in a 19 MiB work area of its own that is allocated once and
//! reused ([`phc`]). Unbounded, the blocking pool would start up to 512 computations at once,
//! and even bounded, a fresh 19 MiB allocation per hash left a freed copy in each allocator
//! arena of every blocking thread that ever ran one (300 creates at once left a control plane
//! at 479 MiB resident).

mod permits;
pub mod phc;

pub use permits::HashingPermits;

use keyplane_shared::ApiKey;
use zeroize::Zeroizing;

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Argon2 refused (e.g. the OS CSPRNG failed while making a salt).
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task panicked or was cancelled.
    #[error("hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The permits were closed (never done: they live as long as the process).
    #[error("hashing permits closed")]
    Closed,
}

/// The Argon2id PHC string of a key.
pub async fn hash_key(key: &ApiKey) -> Result<String, HashingError> {
    hash_secret(key.expose_secret()).await
}

/// Whether `key` matches a stored PHC string (false for a malformed one). The computed and
/// stored hashes are compared in constant time.
pub async fn verify_key(key: &ApiKey, phc: &str) -> Result<bool, HashingError> {
    verify_secret(key.expose_secret(), phc).await
}

/// The Argon2id PHC string of a password.
pub async fn hash_password(password: &str) -> Result<String, HashingError> {
    hash_secret(password).await
}

/// Whether `password` matches a stored PHC string (false for a malformed one), in constant
/// time for the comparison itself.
pub async fn verify_password(password: &str, phc: &str) -> Result<bool, HashingError> {
    verify_secret(password, phc).await
}

async fn hash_secret(secret: &str) -> Result<String, HashingError> {
    let secret = Zeroizing::new(secret.to_owned());
    HashingPermits::global()
        .run(move |area| phc::hash(secret.as_bytes(), area))
        .await?
}

async fn verify_secret(secret: &str, stored: &str) -> Result<bool, HashingError> {
    let secret = Zeroizing::new(secret.to_owned());
    let stored = stored.to_owned();
    HashingPermits::global()
        .run(move |area| phc::verify(secret.as_bytes(), &stored, area))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_shared::{Environment, KeyPrefix};

    #[tokio::test]
    async fn a_hash_verifies_its_key_and_no_other() {
        let prefix = KeyPrefix::default();
        let key = ApiKey::generate(&prefix, Environment::Live).expect("CSPRNG");
        let other = ApiKey::generate(&prefix, Environment::Live).expect("CSPRNG");
        let hash = hash_key(&key).await.expect("hashed");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains(key.expose_secret()));
        assert!(verify_key(&key, &hash).await.expect("ran"));
        assert!(!verify_key(&other, &hash).await.expect("ran"));
        assert!(!verify_key(&key, "not a phc string").await.expect("ran"));
    }
}
