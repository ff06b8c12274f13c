//! Making a new key: the secret from the OS CSPRNG, its lookup digest under the current pepper,
//! and its Argon2id hash. The plaintext leaves this module only in the create / rotate response.

use keyplane_shared::ids::{KeyId, OrgId};
use keyplane_shared::{ApiKey, Environment, RateLimit, ScopeSet, Timestamp};
use serde_json::{Map, Value};

use crate::auth::KeyMaker;
use crate::error::ApiError;
use crate::hashing;
use crate::state::AppState;
use crate::store::NewKey;

/// The caller-chosen settings of a new key (validated).
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    /// Display name.
    pub name: String,
    /// Scopes.
    pub scopes: ScopeSet,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Rate-limit override.
    pub rate_limit: Option<RateLimit>,
    /// Labels.
    pub metadata: Map<String, Value>,
}

impl KeySettings {
    /// Placeholder settings for a rotation's successor, whose settings the store copies from
    /// the old key inside its transaction.
    pub fn copied_by_the_store() -> Self {
        KeySettings::default()
    }
}

/// Generates a key for `org` and the record to store for it.
pub async fn issue_key(
    state: &AppState,
    org: OrgId,
    environment: Environment,
    maker: KeyMaker,
    settings: KeySettings,
) -> Result<(ApiKey, NewKey), ApiError> {
    let key = ApiKey::generate(&state.prefix, environment).map_err(ApiError::internal)?;
    let pepper = state.peppers.current();
    state.metrics.key_hashes.inc();
    let secret_hash = hashing::hash_key(&key).await.map_err(ApiError::internal)?;
    let new = NewKey {
        id: KeyId::generate().map_err(ApiError::internal)?,
        org_id: org,
        name: settings.name,
        environment,
        truncated: key.truncated(),
        digest: pepper.digest(&key),
        pepper_id: pepper.id(),
        secret_hash,
        scopes: settings.scopes,
        rate_limit: settings.rate_limit,
        metadata: settings.metadata,
        expires_at: settings.expires_at,
        created_by: maker.key,
        created_by_user: maker.user,
        owner_id: maker.owner,
    };
    Ok((key, new))
}
