//! The state every handler shares: one cheap-to-clone handle around the store, the secrets the
//! API needs, the clock and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use keyplane_shared::ids::{KeyId, OrgId};
use keyplane_shared::sync::SyncSecret;
use keyplane_shared::{KeyPrefix, LookupDigest, PepperSet, Timestamp};

use crate::access::{Access, RoleName};
use crate::accounts::throttle::LoginThrottle;
use crate::accounts::tokens::CsrfKey;
use crate::ceiling::RateLimitCeiling;
use crate::client_address::TrustedProxies;
use crate::error::ApiError;
use crate::host_token::HostTokens;
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::scanning_keys::ScanningKeySource;
use crate::secrets::webhook_signing::WebhookSecrets;
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
    /// The URL links handed out start with (no trailing slash).
    pub public_url: String,
    /// Derives sessions' CSRF tokens.
    pub csrf: CsrfKey,
    /// Sign-in attempts per email and address.
    pub throttle: LoginThrottle,
    /// The host products whose tokens are accepted.
    pub host_tokens: HostTokens,
    /// Sends invitation emails, if configured.
    pub mailer: Mailer,
    /// Derives webhook endpoints' signing secrets.
    pub webhook_secrets: WebhookSecrets,
    /// GitHub's secret-scanning keys, when its leak reports are accepted.
    pub github_scanning: Option<Arc<ScanningKeySource>>,
    /// Reports of leaked keys per client address.
    pub leak_reports: crate::accounts::throttle::AddressThrottle,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// The first organization (its owners are the operators), once known: it never changes.
    first_org: OnceLock<OrgId>,
    /// The dashboard's forms already submitted (each shows a key once).
    pub spent_forms: crate::accounts::once::SpentForms,
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

/// What the configuration says beyond the secrets.
#[derive(Debug)]
pub struct Settings {
    /// What the operator allows.
    pub policy: OperatorPolicy,
    /// How people sign in.
    pub people: PeopleSettings,
    /// Derives webhook endpoints' signing secrets (from the signing secret).
    pub webhook_secrets: WebhookSecrets,
    /// GitHub's secret-scanning keys, when its leak reports are accepted.
    pub github_scanning: Option<Arc<ScanningKeySource>>,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// How people sign in, from the configuration.
#[derive(Debug)]
pub struct PeopleSettings {
    /// The URL links handed out start with (no trailing slash).
    pub public_url: String,
    /// The host products whose tokens are accepted.
    pub host_tokens: HostTokens,
    /// Derives sessions' CSRF tokens (from the signing secret).
    pub csrf: CsrfKey,
    /// Sign-in attempts per email and address.
    pub throttle: LoginThrottle,
    /// Sends invitation emails, if configured.
    pub mailer: Mailer,
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
        settings: Settings,
    ) -> Self {
        let Settings {
            policy,
            people,
            webhook_secrets,
            github_scanning,
            trusted_proxies,
        } = settings;
        let PeopleSettings {
            public_url,
            host_tokens,
            csrf,
            throttle,
            mailer,
        } = people;
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
            public_url,
            csrf,
            throttle,
            host_tokens,
            mailer,
            webhook_secrets,
            github_scanning,
            leak_reports: Default::default(),
            trusted_proxies,
            first_org: OnceLock::new(),
            spent_forms: Default::default(),
            verified: Mutex::new(HashMap::new()),
        }))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// The first organization, whose owners are the deployment's operators.
    pub async fn operator_org(&self) -> Result<Option<OrgId>, ApiError> {
        if let Some(org) = self.0.first_org.get() {
            return Ok(Some(*org));
        }
        let found = self.0.store.first_org().await?;
        if let Some(org) = found {
            let _ = self.0.first_org.set(org);
        }
        Ok(found)
    }

    /// What a member with `role` may do in `org` (404 for a role the organization lacks).
    pub async fn member_access(&self, org: OrgId, role: RoleName) -> Result<Access, ApiError> {
        let ceiling = self
            .0
            .store
            .role_ceiling(org, &role)
            .await
            .map_err(|error| match error {
                crate::store::StoreError::NotFound => ApiError::NotFound("role"),
                other => other.into(),
            })?;
        let operator = self.operator_org().await? == Some(org);
        Ok(Access::of_member(role, ceiling, operator))
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
