//! How `keyplane serve` is configured: flags, each also read from an environment variable.
//! Secrets are environment-only (see [`crate::secrets`]) so they never appear in `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;

use keyplane_shared::KeyPrefix;

/// `keyplane serve` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "KEYPLANE_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    // Hardening: a separate metrics listener and the operator's rate-limit ceiling.
    /// Serve `/metrics` on this address only (and answer 404 for it on `--listen`); default:
    /// on the main listener. Keep it off the public listener in production.
    #[arg(long, env = "KEYPLANE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The highest per-key rate limit a key may be given, `<requests>/min,burst=<n>` (default:
    /// ten times the default limit).
    #[arg(
        long,
        env = "KEYPLANE_MAX_RATE_LIMIT",
        default_value_t = crate::ceiling::RateLimitCeiling::default(),
        value_name = "N/min,burst=B"
    )]
    pub max_rate_limit: crate::ceiling::RateLimitCeiling,
    /// Reverse proxies in front of Keyplane, comma-separated addresses and networks
    /// (`127.0.0.1,10.0.0.0/8`): a request from one of them is counted, throttled and audited
    /// as coming from the client its `X-Forwarded-For` names. Default: none (the connection's
    /// peer is the client, and `X-Forwarded-For` is ignored).
    #[arg(
        long,
        env = "KEYPLANE_TRUSTED_PROXIES",
        default_value_t = crate::client_address::TrustedProxies::default(),
        value_name = "ADDRESS|NETWORK,…"
    )]
    pub trusted_proxies: crate::client_address::TrustedProxies,

    /// Directory for local data: the SQLite database and generated secrets.
    #[arg(long, env = "KEYPLANE_DATA_DIR", default_value = ".keyplane")]
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL, `sqlite://…` for another SQLite file; default: an
    /// embedded SQLite file `keyplane.db` in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The deployment's key prefix (`sk` gives `sk_live_…`).
    #[arg(long, env = "KEYPLANE_KEY_PREFIX", default_value = "sk")]
    pub key_prefix: KeyPrefix,
    /// Name of the organization created on first start with an empty database.
    #[arg(
        long,
        env = "KEYPLANE_ORG_NAME",
        default_value = "Default organization"
    )]
    pub org_name: String,
    /// Days usage events are kept before the hourly cleanup deletes them (0: forever).
    #[arg(
        long,
        env = "KEYPLANE_USAGE_RETENTION_DAYS",
        default_value_t = crate::usage::retention::DEFAULT_DAYS,
        value_parser = clap::value_parser!(u32).range(0..=36_500)
    )]
    pub usage_retention_days: u32,
    /// Local development: allows what a production deployment must not (http:// edge URLs,
    /// private webhook targets); set by cargo xtask dev and the test harness, never by default.
    #[arg(long, env = "KEYPLANE_LOCAL_DEV")]
    pub local_dev: bool,
    /// How people sign in: host-product tokens and the public URL of links.
    #[command(flatten)]
    pub people: PeopleConfig,
    /// GitHub's secret-scanning public keys, which enable `POST /v1/leaks/github`: the URL
    /// that publishes them (`https://api.github.com/meta/public_keys/secret_scanning`, fetched
    /// and cached for an hour) or a JSON file of that answer; default: that route answers 404.
    #[arg(long, env = "KEYPLANE_GITHUB_SCANNING_KEYS", value_name = "URL|FILE")]
    pub github_scanning_keys: Option<String>,
}

/// How people sign in.
#[derive(Debug, Clone, clap::Args)]
pub struct PeopleConfig {
    /// A JSON file naming the host products whose tokens (JWTs) are accepted, and their keys
    /// (see README.md, "People: three ways to authenticate"); default: none.
    #[arg(long, env = "KEYPLANE_HOST_TOKENS")]
    pub host_tokens: Option<PathBuf>,
    /// The URL people reach this control plane at, for the links it hands out (invitations,
    /// the first owner's setup link); default: `http://` and the listen address.
    #[arg(long, env = "KEYPLANE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Sign-in attempts allowed per submitted email, `<n>/min,burst=<b>`.
    #[arg(
        long,
        env = "KEYPLANE_LOGIN_LIMIT_PER_EMAIL",
        default_value_t = crate::accounts::throttle::per_email_default(),
        value_name = "N/min,burst=B"
    )]
    pub login_limit_per_email: crate::ceiling::RateLimitCeiling,
    /// Sign-in attempts allowed per client address, `<n>/min,burst=<b>`.
    #[arg(
        long,
        env = "KEYPLANE_LOGIN_LIMIT_PER_ADDRESS",
        default_value_t = crate::accounts::throttle::per_address_default(),
        value_name = "N/min,burst=B"
    )]
    pub login_limit_per_address: crate::ceiling::RateLimitCeiling,
    /// Where invitation emails go out, `smtps://user:password@host:465` (or `smtp://…`); put it
    /// in the environment, not on the command line, when it holds a password. Default: no
    /// email, the link is shown to the inviter.
    #[arg(long, env = "KEYPLANE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<crate::mailer::SmtpUrl>,
    /// The sender of invitation emails, `Keyplane <keys@example.com>`.
    #[arg(long, env = "KEYPLANE_SMTP_FROM")]
    pub smtp_from: Option<String>,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        PeopleConfig {
            host_tokens: None,
            public_url: None,
            login_limit_per_email: crate::accounts::throttle::per_email_default(),
            login_limit_per_address: crate::accounts::throttle::per_address_default(),
            smtp_url: None,
            smtp_from: None,
        }
    }
}

impl Config {
    /// The public URL in effect, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.people.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("keyplane.db").display()
            ),
        }
    }
}
