//! The state every handler shares: one cheap-to-clone handle around the store, the secrets the
//! API needs, the clock and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyplane_shared::ids::KeyId;
use keyplane_shared::sync::SyncSecret;
use keyplane_shared::{KeyPrefix, LookupDigest, PepperSet, Timestamp};

use crate::ceiling::RateLimitCeiling;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::store::Store;
use crate::store::audit_chain::AuditSealer;

/// Where handlers read the time; tests substitute a clock they move by hand.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

/// Cheap to clone: every handler gets one.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points at.
pub struct Shared {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Lookup-digest peppers, current first.
    pub peppers: PepperSet,
    /// The deployment's key prefix.
    pub prefix: KeyPrefix,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Checks the audit chain.
    pub sealer: AuditSealer,
    /// Request and domain counters for `/metrics`.
    pub metrics: Metrics,
    /// Signs pushes to edges and verifies their pulls.
    pub edge_secret: SyncSecret,
    /// What the operator allows.
    pub policy: OperatorPolicy,
    /// Refused management calls being coalesced before they reach the audit log.
    pub refusals: RefusalLog,
    /// Management keys whose Argon2id hash this process has already checked, by id, with the
    /// digest that was checked. A std mutex: it is held for a map lookup, never across `.await`.
    verified: Mutex<HashMap<KeyId, LookupDigest>>,
}

/// What the operator allows, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct OperatorPolicy {
    /// The local-development switch ([`crate::Config::local_dev`]): http:// edge URLs allowed.
    pub local_dev: bool,
    /// The ceiling on per-key rate limits ([`crate::Config::max_rate_limit`]).
    pub max_rate_limit: RateLimitCeiling,
}

/// Bound on [`Shared::verified`]; past it the cache starts over (a miss only costs a hash).
const VERIFIED_CAPACITY: usize = 10_000;

impl AppState {
    /// Assembles the state.
    pub fn new(
        store: Arc<dyn Store>,
        peppers: PepperSet,
        prefix: KeyPrefix,
        clock: Arc<dyn Clock>,
        sealer: AuditSealer,
        edge_secret: SyncSecret,
        policy: OperatorPolicy,
    ) -> Self {
        AppState(Arc::new(Shared {
            store,
            peppers,
            prefix,
            clock,
            sealer,
            metrics: Metrics::default(),
            edge_secret,
            policy,
            refusals: RefusalLog::default(),
            verified: Mutex::new(HashMap::new()),
        }))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// Whether this key's hash was already verified for exactly this digest.
    pub fn is_verified(&self, id: KeyId, digest: &LookupDigest) -> bool {
        self.0
            .verified
            .lock()
            .is_ok_and(|verified| verified.get(&id) == Some(digest))
    }

    /// Remembers a successful Argon2id verification.
    pub fn remember_verified(&self, id: KeyId, digest: LookupDigest) {
        if let Ok(mut verified) = self.0.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(id, digest);
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
