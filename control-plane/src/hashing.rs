//! Argon2id, the at-rest verifier of every key and every local account's password, run on
//! tokio's blocking pool so the async
//! worker threads never stall on it (one hash costs tens of milliseconds of CPU by design).
//!
//! Parameters are argon2's defaults, which are OWASP's recommendation for Argon2id:
//! m = 19 MiB, t = 2, p = 1. The PHC string stores them, so a later change of defaults keeps
//! old hashes verifiable.
//!
//! At most one computation per core runs at once ([`HashingPermits`]): each holds 19 MiB, and
//! the blocking pool would otherwise start up to 512 of them, so a burst of a thousand key
//! creates would take ten gigabytes for no gain in throughput. The rest wait their turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use keyplane_shared::ApiKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// Whether `key` matches a stored PHC string (false for a malformed one). Argon2's verifier
/// compares the computed and stored hashes in constant time.
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
        .run(move || {
            Argon2::default()
                .hash_password(secret.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| HashingError::Argon2(error.to_string()))
        })
        .await?
}

async fn verify_secret(secret: &str, phc: &str) -> Result<bool, HashingError> {
    let secret = Zeroizing::new(secret.to_owned());
    let phc = phc.to_owned();
    HashingPermits::global()
        .run(move || {
            PasswordHash::new(&phc).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
}

/// How many Argon2id computations may run at once, and how many ran at once at most.
#[derive(Debug)]
pub struct HashingPermits {
    permits: Arc<Semaphore>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl HashingPermits {
    /// `limit` computations at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        }
    }

    /// The process's permits: one per core.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<HashingPermits> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Self::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        })
    }

    /// The most computations that ran at once so far.
    pub fn most_running(&self) -> usize {
        self.most_running.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit moves into the
    /// blocking task, so a caller that gives up waiting (a cancelled request) does not free
    /// it before the computation ends.
    pub async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit: OwnedSemaphorePermit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashingError::Closed)?;
        Ok(tokio::task::spawn_blocking(move || {
            let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
            self.most_running.fetch_max(now, Ordering::Relaxed);
            let output = work();
            self.running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            output
        })
        .await?)
    }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_hashes_runs_at_most_the_limit_at_once() {
        // Leaked so the permits are 'static, like the process's own.
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(2)));
        let burst: Vec<_> = (0..16)
            .map(|n| {
                tokio::spawn(permits.run(move || {
                    // Long enough that, unbounded, the blocking pool would run all 16 at once.
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    n
                }))
            })
            .collect();
        let mut done = Vec::new();
        for task in burst {
            done.push(task.await.expect("joined").expect("ran"));
        }
        done.sort_unstable();
        assert_eq!(done, (0..16).collect::<Vec<_>>(), "every one ran");
        assert_eq!(
            permits.most_running(),
            2,
            "never more than the limit at once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_caller_keeps_its_permit_until_the_work_ends() {
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(1)));
        let (started, started_rx) = std::sync::mpsc::channel();
        let first = tokio::spawn(permits.run(move || {
            let _ = started.send(());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }));
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("joined")
            .expect("the first work started");
        // The caller gives up while its work still runs: the permit must stay taken.
        first.abort();
        let second = permits.run(|| ());
        tokio::time::timeout(std::time::Duration::from_millis(50), second)
            .await
            .expect_err("the second waits while the first's work runs");
        assert_eq!(permits.most_running(), 1);
    }
}
