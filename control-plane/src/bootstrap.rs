//! Start-up glue: opening the data directory, the secrets and the store into an [`AppState`],
//! and creating an organization with its first admin key (on a first start with an empty
//! database, or on demand with `keyplane bootstrap`; the key is returned to be printed once).

use std::sync::Arc;

use anyhow::Context as _;
use keyplane_shared::ids::OrgId;
use keyplane_shared::{ApiKey, Environment, Scope, ScopeSet};
use secrecy::{ExposeSecret as _, SecretString};

use crate::access::{BuiltinRole, RoleName};
use crate::accounts::throttle::LoginThrottle;
use crate::accounts::tokens::CsrfKey;
use crate::auth::KeyMaker;
use crate::config::Config;
use crate::error::ApiError;
use crate::host_token::HostTokens;
use crate::keys::issue::{KeySettings, issue_key};
use crate::mailer::Mailer;
use crate::scanning_keys::ScanningKeySource;
use crate::secrets::webhook_signing::WebhookSecrets;
use crate::secrets::{self, SecretsSource};
use crate::state::{AppState, Clock, OperatorPolicy, PeopleSettings, Settings};
use crate::store::audit_chain::AuditSealer;
use crate::store::sql::SqlStore;
use crate::store::{AuditContext, NewOrg, OrgRecord, Reach, Store};

/// What a first start created: the organization, its admin key and the first owner's setup
/// link, to print once.
pub struct Bootstrapped {
    /// The organization.
    pub org: OrgRecord,
    /// Its first admin key.
    pub admin_key: ApiKey,
    /// The one-time link that makes the first owner (who then owns the admin key).
    pub setup_link: String,
}

/// Opens the data directory, secrets and store, and assembles the state.
pub async fn open_state(
    config: &Config,
    clock: Arc<dyn Clock>,
    env: impl Fn(&str) -> Option<SecretString>,
) -> anyhow::Result<AppState> {
    let (state, _) = open(config, clock, env).await?;
    Ok(state)
}

/// [`open_state`], and where the secrets came from.
pub(crate) async fn open(
    config: &Config,
    clock: Arc<dyn Clock>,
    env: impl Fn(&str) -> Option<SecretString>,
) -> anyhow::Result<(AppState, SecretsSource)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let (secrets, source) = secrets::load(&config.data_dir, env)?;
    match &source {
        SecretsSource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "generated a new pepper and signing secret (file mode 0600); back this file up: \
             without it no stored key can be verified"
        ),
        SecretsSource::File(path) => tracing::info!(path = %path.display(), "secrets loaded"),
        SecretsSource::Environment => tracing::info!("secrets loaded from the environment"),
    }
    let sealer = AuditSealer::new(secrets.signing_secret.expose_secret());
    let host_tokens = match &config.people.host_tokens {
        Some(path) => HostTokens::load(path)
            .with_context(|| format!("reading the host-token configuration {}", path.display()))?,
        None => HostTokens::none(),
    };
    let github_scanning = match &config.github_scanning_keys {
        Some(setting) => {
            let source = ScanningKeySource::from_setting(setting, config.local_dev)?;
            tracing::info!(keys = %source.describe(), "GitHub secret-scanning reports accepted");
            Some(Arc::new(source))
        }
        None => None,
    };
    let mailer = Mailer::new(
        config.people.smtp_url.as_ref(),
        config.people.smtp_from.as_deref(),
    )?;
    if !host_tokens.is_empty() {
        tracing::info!(
            issuers = host_tokens.issuers().len(),
            "host-product tokens accepted"
        );
    }
    let store = SqlStore::connect(&config.database_url(), sealer.clone())
        .await
        .context("opening the database")?;
    tracing::info!(backend = ?store.backend(), "database ready");
    let state = AppState::new(
        Arc::new(store) as Arc<dyn Store>,
        secrets.peppers,
        config.key_prefix.clone(),
        clock,
        sealer,
        secrets.edge_secret,
        Settings {
            policy: OperatorPolicy {
                local_dev: config.local_dev,
                max_rate_limit: config.max_rate_limit,
            },
            people: PeopleSettings {
                public_url: config.public_url(),
                host_tokens,
                csrf: CsrfKey::new(secrets.signing_secret.expose_secret()),
                throttle: LoginThrottle::new(
                    config.people.login_limit_per_email.limit(),
                    config.people.login_limit_per_address.limit(),
                ),
                mailer,
            },
            webhook_secrets: WebhookSecrets::new(secrets.signing_secret.expose_secret()),
            github_scanning,
            trusted_proxies: config.trusted_proxies.clone(),
        },
    );
    Ok((state, source))
}

/// Warns when the secrets file sits beside the SQLite file (unless `--local-dev`).
pub(crate) fn warn_if_misplaced(source: &SecretsSource, config: &Config) {
    if let Some(path) = secrets::misplaced_secrets(source, &config.database_url(), config.local_dev)
    {
        tracing::warn!(
            path = %path.display(),
            "the secrets file sits beside the SQLite database: one copy of that directory \
             holds both the key hashes and the pepper that protects them; in production keep \
             it apart (another directory or volume, or the KEYPLANE_* variables) \
             (--local-dev silences this)"
        );
    }
}

/// On an empty database, creates the first organization (named `org_name`) and its admin key.
pub(crate) async fn first_start(
    state: &AppState,
    org_name: &str,
) -> anyhow::Result<Option<Bootstrapped>> {
    if state.store.org_count().await? > 0 {
        return Ok(None);
    }
    // Another instance may be starting on the same database: one at a time from here, and
    // look again once it is this one's turn.
    let lock = state.store.first_start_lock().await?;
    if state.store.org_count().await? > 0 {
        return Ok(None);
    }
    let (org, admin_key) = create_organization(state, org_name)
        .await
        .map_err(|error| anyhow::anyhow!("creating the first organization: {error}"))?;
    let setup_link = owner_setup_link(state, org.id, None)
        .await
        .map_err(|error| anyhow::anyhow!("making the setup link: {error}"))?;
    drop(lock);
    Ok(Some(Bootstrapped {
        org,
        admin_key,
        setup_link,
    }))
}

/// A one-time link (valid 7 days) that makes its user an owner of `org`: for the first owner,
/// or from `keyplane users add`. `email` fixes the account's email (else the person picks it).
pub async fn owner_setup_link(
    state: &AppState,
    org: OrgId,
    email: Option<String>,
) -> Result<String, ApiError> {
    let context = AuditContext {
        user_agent: Some("keyplane bootstrap".into()),
        request_id: "bootstrap".into(),
        ..AuditContext::default()
    };
    let owner = RoleName::Builtin(BuiltinRole::Owner);
    let invited =
        crate::people::invitations::create(state, org, email, owner, None, &context, false).await?;
    invited
        .link
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a setup link is never emailed")))
}

/// Creates an organization named `name` and its first key (`admin:full`, live, never expires).
pub async fn create_organization(
    state: &AppState,
    name: &str,
) -> Result<(OrgRecord, ApiKey), ApiError> {
    let org = NewOrg {
        id: OrgId::generate().map_err(ApiError::internal)?,
        name: crate::keys::input::name(name)?,
    };
    let admin = ScopeSet::new([Scope::AdminFull]).map_err(ApiError::internal)?;
    let settings = KeySettings {
        name: "Initial admin key".into(),
        scopes: admin.clone(),
        ..KeySettings::default()
    };
    let (key, new) = issue_key(
        state,
        org.id,
        Environment::Live,
        KeyMaker::default(),
        settings,
    )
    .await?;
    let context = AuditContext {
        reach: Reach::within(&admin),
        user_agent: Some("keyplane bootstrap".into()),
        request_id: "bootstrap".into(),
        ..AuditContext::default()
    };
    let (record, _) = state
        .store
        .create_org(org, new, &context, state.now())
        .await?;
    Ok((record, key))
}
