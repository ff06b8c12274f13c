//! The edge's configuration, read once per isolate from the Worker's vars and secrets.
//!
//! Every value is documented in `wrangler.toml`. A missing or invalid setting is a
//! [`SettingsError`]: the edge then refuses every request with 500 `edge_misconfigured` and
//! forwards nothing (fail closed), and the log names the setting.

use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_shared::decision::{AcceptedEnvironments, EdgeConfig};
use keyplane_shared::digest::PepperTextError;
use keyplane_shared::sync::SyncSecret;
use keyplane_shared::{KeyPrefix, PepperSet, PolicySpec, RateLimit, RoutePolicy};
use thiserror::Error;
use worker::Env;

/// Everything the edge needs to decide and to replicate.
pub struct Settings {
    /// The decision's inputs (prefix, peppers, environments, route policy, default limit).
    pub decision: EdgeConfig,
    /// Where allowed requests go, without a trailing slash.
    pub origin_url: String,
    /// The control plane's base URL, without a trailing slash.
    pub control_plane_url: String,
    /// Signs and verifies replication requests.
    pub sync_secret: SyncSecret,
    /// This edge's name in the control plane's registry.
    pub edge_name: String,
    /// The URL the control plane pushes changes to (empty: pull only).
    pub edge_url: String,
    /// The oldest copy of the table an isolate decides on, in milliseconds: a request that
    /// finds its isolate's copy older first reads what changed from the Durable Object.
    pub replica_freshness_ms: f64,
    /// `REPLICA_KEEP_WHILE_REBUILDING_MB`, in bytes: an isolate's copy of the table at most
    /// this large is kept while a whole new table is built beside it (it decides while fresh,
    /// and after a failed build); a larger one is dropped first (requests wait for the build),
    /// so an isolate never holds two large tables.
    pub replica_keep_while_rebuilding_bytes: usize,
    /// `KEYPLANE_LOCAL_DEV`: local development, where `http://` control-plane URLs are allowed.
    pub local_dev: bool,
    /// How often the Durable Object pulls the control plane's feed, in milliseconds.
    pub pull_interval_ms: i64,
    /// Where rate-limit counters live.
    pub rate_limit_mode: RateLimitMode,
    /// Which answers carry the rate-limit fields.
    pub rate_limit_headers: RateLimitHeaders,
    /// Usage reporting to the control plane.
    pub usage: UsageSettings,
    /// What the edge does with a path other readers could take another way.
    pub path_normalization: PathNormalization,
}

/// What the edge does with an ambiguous path (`PATH_NORMALIZATION`): an encoded dot segment,
/// an encoded `/` or `\`, a raw `\`, an empty segment or a control character (see
/// `keyplane_shared::path::Ambiguity`). Every path is decided on, and forwarded as, its
/// canonical form (the URL standard's) either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathNormalization {
    /// `strict` (default): refuse it with 400 `ambiguous_path`; nothing is forwarded.
    Strict,
    /// `resolve`: accept it, decide on and forward its canonical form (for origins that need
    /// such paths and read them as the URL standard does).
    Resolve,
}

/// Where rate-limit counters live (`RATE_LIMIT_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    /// `isolate` (default): each isolate counts on its own, in memory; no added latency, but a
    /// key spread over `n` isolates can be admitted up to `n` times its burst.
    Isolate,
    /// `global`: one Durable Object per key counts every request of that key, wherever it
    /// lands; exact, at the cost of a round trip to the object per request.
    Global,
}

/// Which answers carry the rate-limit header fields (`RATE_LIMIT_HEADERS`). The request id
/// is on every answer either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitHeaders {
    /// `always` (default): every answer to a key that passed the other checks (the origin's,
    /// relayed, the edge's 502 for it, and the 429).
    Always,
    /// `on_429`: only the 429 refusal; an admitted request's answer goes without them (the
    /// relay then adds the request id alone: for deployments that want the last few percent).
    On429,
}

/// Usage reporting settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageSettings {
    /// `USAGE_REPORTING`: `on` (default) or `off`.
    pub enabled: bool,
    /// `USAGE_BUFFER_MAX`: events an isolate holds while the control plane is unreachable;
    /// past it the oldest are dropped and counted. Default 10,000.
    pub buffer_max: usize,
    /// `USAGE_FLUSH_MS`: the pause between two partial batches (a full batch goes at once), so
    /// about the longest an event waits while the control plane answers. Default 1,000.
    pub flush_ms: f64,
}

/// A setting that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("edge setting {name}: {problem}")]
pub struct SettingsError {
    /// The variable or secret.
    pub name: &'static str,
    /// What is wrong with it (never its value: some are secrets).
    pub problem: String,
}

fn invalid(name: &'static str, problem: impl ToString) -> SettingsError {
    SettingsError {
        name,
        problem: problem.to_string(),
    }
}

impl Settings {
    /// Reads every setting through `get` (a var or secret by name; `None` when unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let text = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| text(name).ok_or_else(|| invalid(name, "is not set"));

        let prefix = KeyPrefix::new(&text("KEY_PREFIX").unwrap_or_else(|| "sk".into()))
            .map_err(|error| invalid("KEY_PREFIX", error))?;
        let peppers = parse_peppers(&required("KEYPLANE_PEPPERS")?)
            .map_err(|problem| invalid("KEYPLANE_PEPPERS", problem))?;
        let sync_secret = BASE64
            .decode(required("KEYPLANE_EDGE_SECRET")?)
            .map_err(|_| invalid("KEYPLANE_EDGE_SECRET", "is not base64"))
            .and_then(|bytes| {
                SyncSecret::new(bytes).map_err(|error| invalid("KEYPLANE_EDGE_SECRET", error))
            })?;
        let environments = match text("ACCEPTED_ENVIRONMENTS").as_deref() {
            None | Some("live,test") | Some("test,live") | Some("both") => {
                AcceptedEnvironments::Both
            }
            Some("live") => AcceptedEnvironments::LiveOnly,
            Some("test") => AcceptedEnvironments::TestOnly,
            Some(_) => {
                return Err(invalid(
                    "ACCEPTED_ENVIRONMENTS",
                    "must be `live`, `test` or `live,test`",
                ));
            }
        };
        let policy = match text("ROUTE_POLICY") {
            None => RoutePolicy::default(),
            Some(json) => serde_json::from_str::<PolicySpec>(&json)
                .map_err(|error| invalid("ROUTE_POLICY", error))
                .and_then(|spec| {
                    RoutePolicy::from_spec(&spec).map_err(|error| invalid("ROUTE_POLICY", error))
                })?,
        };
        let number = |name: &'static str, default: u32| -> Result<u32, SettingsError> {
            text(name).map_or(Ok(default), |value| {
                value
                    .parse::<u32>()
                    .map_err(|_| invalid(name, "must be a whole number"))
            })
        };
        let default_rate_limit = RateLimit::new(
            number(
                "RATE_LIMIT_PER_MINUTE",
                RateLimit::DEFAULT.requests_per_minute(),
            )?,
            number("RATE_LIMIT_BURST", u32::from(RateLimit::DEFAULT.burst()))?,
        )
        .map_err(|error| invalid("RATE_LIMIT_PER_MINUTE / RATE_LIMIT_BURST", error))?;
        let url = |name: &'static str, value: String| {
            base_url(&value).map_err(|problem| invalid(name, problem))
        };
        let local_dev = match text("KEYPLANE_LOCAL_DEV").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("KEYPLANE_LOCAL_DEV", "must be `true` or `false`")),
        };
        let control_plane_url = url("CONTROL_PLANE_URL", required("CONTROL_PLANE_URL")?)?;
        if !local_dev && !control_plane_url.starts_with("https://") {
            // The feed is signed either way; TLS keeps who holds which key off the wire.
            return Err(invalid(
                "CONTROL_PLANE_URL",
                "must be an https:// URL (http:// only with KEYPLANE_LOCAL_DEV = \"true\")",
            ));
        }
        if text("REPLICA_REFRESH_MS").is_some() {
            return Err(invalid(
                "REPLICA_REFRESH_MS",
                "was replaced by REPLICA_FRESHNESS_MS (the oldest copy a decision may use)",
            ));
        }
        let replica_freshness_ms = f64::from(number("REPLICA_FRESHNESS_MS", 100)?);
        if !(1.0..=60_000.0).contains(&replica_freshness_ms) {
            return Err(invalid("REPLICA_FRESHNESS_MS", "must be 1 to 60000"));
        }
        let keep_mb = number("REPLICA_KEEP_WHILE_REBUILDING_MB", 32)?;
        if keep_mb > 1024 {
            return Err(invalid(
                "REPLICA_KEEP_WHILE_REBUILDING_MB",
                "must be 0 to 1024",
            ));
        }
        let edge_url = match text("EDGE_URL") {
            Some(value) => url("EDGE_URL", value)?,
            None => String::new(),
        };
        let edge_name = text("EDGE_NAME").unwrap_or_else(|| "edge".into());
        if edge_name.len() > 64
            || !edge_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "EDGE_NAME",
                "must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        let rate_limit_mode = match text("RATE_LIMIT_MODE").as_deref() {
            None | Some("isolate") => RateLimitMode::Isolate,
            Some("global") => RateLimitMode::Global,
            Some(_) => return Err(invalid("RATE_LIMIT_MODE", "must be `isolate` or `global`")),
        };
        let rate_limit_headers = match text("RATE_LIMIT_HEADERS").as_deref() {
            None | Some("always") => RateLimitHeaders::Always,
            Some("on_429") => RateLimitHeaders::On429,
            Some(_) => {
                return Err(invalid(
                    "RATE_LIMIT_HEADERS",
                    "must be `always` or `on_429`",
                ));
            }
        };
        let enabled = match text("USAGE_REPORTING").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => return Err(invalid("USAGE_REPORTING", "must be `on` or `off`")),
        };
        let usage = UsageSettings {
            enabled,
            buffer_max: number("USAGE_BUFFER_MAX", 10_000)?.max(1) as usize,
            flush_ms: f64::from(number("USAGE_FLUSH_MS", 1_000)?),
        };

        // Path strictness.
        let path_normalization = match text("PATH_NORMALIZATION").as_deref() {
            None | Some("strict") => PathNormalization::Strict,
            Some("resolve") => PathNormalization::Resolve,
            Some(_) => {
                return Err(invalid(
                    "PATH_NORMALIZATION",
                    "must be `strict` or `resolve`",
                ));
            }
        };

        Ok(Settings {
            decision: EdgeConfig {
                prefix,
                peppers,
                environments,
                policy,
                default_rate_limit,
            },
            origin_url: url("ORIGIN_URL", required("ORIGIN_URL")?)?,
            control_plane_url,
            sync_secret,
            edge_name,
            edge_url,
            replica_freshness_ms,
            replica_keep_while_rebuilding_bytes: keep_mb as usize * MB,
            local_dev,
            pull_interval_ms: i64::from(number("PULL_INTERVAL_SECS", 10)?.max(1)) * 1000,
            rate_limit_mode,
            rate_limit_headers,
            usage,
            path_normalization,
        })
    }

    /// Reads the settings from the Worker's environment.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Self::from_lookup(|name| {
            env.secret(name)
                .ok()
                .map(|secret| secret.to_string())
                .or_else(|| env.var(name).ok().map(|var| var.to_string()))
        })
    }
}

const MB: usize = 1 << 20;

/// The `REPLICA_KEEP_WHILE_REBUILDING_MB` default, in bytes: a copy of some 550k keys; with a
/// build's own peak beside it, about 70 MB of an isolate's 128 MB.
pub const DEFAULT_KEEP_WHILE_REBUILDING_BYTES: usize = 32 * MB;

thread_local! {
    static CACHED: std::cell::RefCell<Option<Rc<Settings>>> = const { std::cell::RefCell::new(None) };
}

/// The isolate's settings, parsed on first use. Errors are not cached: a fixed deployment
/// comes up without a restart.
pub fn load(env: &Env) -> Result<Rc<Settings>, SettingsError> {
    if let Some(settings) = CACHED.with(|cached| cached.borrow().clone()) {
        return Ok(settings);
    }
    let settings = Rc::new(Settings::from_env(env)?);
    CACHED.with(|cached| *cached.borrow_mut() = Some(settings.clone()));
    Ok(settings)
}

/// A base URL setting (`ORIGIN_URL`, `CONTROL_PLANE_URL`, `EDGE_URL`) as the edge uses it: an
/// http:// or https:// URL with a host and neither query nor fragment (paths are appended to
/// it), in the URL parser's serialization (so it holds no whitespace or control character), its
/// trailing `/` left off.
fn base_url(value: &str) -> Result<String, &'static str> {
    let url = worker::Url::parse(value).map_err(|_| "must be an http:// or https:// URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment (request paths are appended to it)");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `KEYPLANE_PEPPERS`: `<id>:<base64 secret>` items, comma-separated, current first (read by
/// shared's one parser, as the control plane reads it).
pub fn parse_peppers(text: &str) -> Result<PepperSet, String> {
    text.parse()
        .map_err(|error: PepperTextError| error.to_string())
}

#[cfg(test)]
mod tests;
