//! How one edge of a test deployment is started: its name, port and isolates, the worker it
//! runs (Keyplane's, or a JS worker the benchmarks measure it against), under which runtime,
//! and the vars and secrets it is given.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use crate::DeploymentSecrets;
use crate::free_port;

/// How to start one edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// `EDGE_NAME`.
    pub name: String,
    /// The port it listens on (fixed, so a restart keeps its URL).
    pub port: u16,
    /// `CONTROL_PLANE_URL`.
    pub control_plane_url: String,
    /// `ORIGIN_URL`.
    pub origin_url: String,
    /// Durable Object storage directory (kept across restarts); `None`: in memory.
    pub persist_dir: Option<PathBuf>,
    /// `ACCEPTED_ENVIRONMENTS`.
    pub accepted_environments: Option<String>,
    /// `ROUTE_POLICY`.
    pub route_policy: Option<Value>,
    /// `RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`.
    pub rate_limit: (u32, u32),
    /// `PULL_INTERVAL_SECS`.
    pub pull_interval_secs: u32,
    /// Which worker runs: Keyplane's, or one of the benchmark baselines.
    pub worker: EdgeWorker,
    /// Another build of Keyplane's worker to run (a worker-build output directory); `None`:
    /// the setup's (`KEYPLANE_EDGE_BUILD`). Lets a benchmark run two builds side by side.
    pub edge_build: Option<PathBuf>,
    /// What runs it: workerd through miniflare, or the bare workerd binary.
    pub runtime: EdgeRuntime,
    /// Ports of the edge's further isolates (see [`EdgeOptions::with_isolates`]).
    pub isolate_ports: Vec<u16>,
    /// Any other vars (`RATE_LIMIT_MODE`, `USAGE_REPORTING`, `USAGE_FLUSH_MS`, …).
    pub vars: Vec<(String, String)>,
}

/// The worker an edge runs (`KEYPLANE_EDGE_MODE` of `harness/edge.mjs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeWorker {
    /// The built Keyplane worker.
    Keyplane,
    /// A plain JS worker forwarding every request to `ORIGIN_URL` (benchmark baseline).
    Passthrough,
    /// The same, plus the header edits Keyplane makes on an allowed request, with fixed
    /// values and no decision (the benchmark's second baseline).
    PassthroughWithEdits,
    /// Another JS worker of `harness/edge.mjs` (its `jsWorkers`, by mode name): the same edits
    /// made another way, or fewer of them, for the edge overhead benchmark.
    JsAlternative(&'static str),
}

/// What the edge worker runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeRuntime {
    /// workerd through miniflare 4 (`harness/edge.mjs`), as `wrangler dev` runs it: miniflare's
    /// entry worker re-parses every URL before the edge sees it.
    #[default]
    Miniflare,
    /// The pinned workerd binary serving the worker directly (a generated config, no entry
    /// worker in front), as a self-hosted deployment runs it: the edge sees the request-target
    /// as the client sent it. One isolate, Keyplane's worker only.
    BareWorkerd,
}

impl EdgeWorker {
    /// The harness's name for it.
    pub fn mode(self) -> &'static str {
        match self {
            EdgeWorker::Keyplane => "keyplane",
            EdgeWorker::Passthrough => "passthrough",
            EdgeWorker::PassthroughWithEdits => "passthrough-edits",
            EdgeWorker::JsAlternative(mode) => mode,
        }
    }
}

impl EdgeOptions {
    /// Options for an edge on a free port, with a limit high enough that tests never meet it.
    pub fn new(name: &str, control_plane_url: &str, origin_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            port: free_port().unwrap_or(0),
            control_plane_url: control_plane_url.to_owned(),
            origin_url: origin_url.to_owned(),
            persist_dir: None,
            accepted_environments: None,
            route_policy: None,
            rate_limit: (1_000_000, 65_535),
            pull_interval_secs: 10,
            worker: EdgeWorker::Keyplane,
            edge_build: None,
            runtime: EdgeRuntime::default(),
            isolate_ports: Vec::new(),
            vars: Vec::new(),
        }
    }

    /// Sets one more var.
    pub fn var(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs the edge as `isolates` workers, each its own isolate on its own port, sharing the
    /// first one's Durable Objects (one key table store, one rate-limit counter per key), as
    /// the isolates of one Cloudflare deployment do. Pushes and pulls go through the first.
    pub fn with_isolates(&mut self, isolates: usize) -> Result<&mut Self> {
        self.isolate_ports = (1..isolates).map(|_| free_port()).collect::<Result<_>>()?;
        Ok(self)
    }

    /// This edge's base URL (its first isolate's).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The base URL of every isolate of this edge, the first first.
    pub fn isolate_urls(&self) -> Vec<String> {
        std::iter::once(self.port)
            .chain(self.isolate_ports.iter().copied())
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect()
    }

    /// The harness's port argument: every isolate's port, comma-separated.
    pub(crate) fn ports_argument(&self) -> String {
        std::iter::once(self.port)
            .chain(self.isolate_ports.iter().copied())
            .map(|port| port.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The vars and secrets handed to the worker.
    pub(crate) fn bindings(&self, secrets: &DeploymentSecrets) -> Value {
        let mut bindings = json!({
            "ORIGIN_URL": self.origin_url,
            "CONTROL_PLANE_URL": self.control_plane_url,
            "KEY_PREFIX": "sk",
            "EDGE_NAME": self.name,
            "EDGE_URL": self.url(),
            "KEYPLANE_PEPPERS": secrets.peppers,
            "KEYPLANE_EDGE_SECRET": secrets.edge_secret,
            "RATE_LIMIT_PER_MINUTE": self.rate_limit.0.to_string(),
            "RATE_LIMIT_BURST": self.rate_limit.1.to_string(),
            "PULL_INTERVAL_SECS": self.pull_interval_secs.to_string(),
            // The control plane listens on http://127.0.0.1.
            "KEYPLANE_LOCAL_DEV": "true",
        });
        if let Some(environments) = &self.accepted_environments {
            bindings["ACCEPTED_ENVIRONMENTS"] = json!(environments);
        }
        if let Some(policy) = &self.route_policy {
            bindings["ROUTE_POLICY"] = json!(policy.to_string());
        }
        for (name, value) in &self.vars {
            bindings[name.as_str()] = json!(value);
        }
        bindings
    }
}
