//! A whole local deployment for end-to-end tests and benchmarks: secrets shared by the control
//! plane and its edges, the control plane (temporary SQLite), a test origin, and N edges under
//! workerd, each of which can be stopped and restarted on the same port and storage.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_shared::PepperSet;
use keyplane_shared::sync::{self, SignedRequest, SyncSecret};
use serde_json::{Value, json};

use crate::instances::Topology;
use crate::{Origin, Reply, Service, Setup, free_port, fresh_dir};

/// The secrets of one deployment, generated per test.
#[derive(Clone)]
pub struct DeploymentSecrets {
    /// `KEYPLANE_PEPPERS`.
    pub peppers: String,
    /// `KEYPLANE_SIGNING_SECRET`.
    pub signing_secret: String,
    /// `KEYPLANE_EDGE_SECRET`.
    pub edge_secret: String,
}

impl DeploymentSecrets {
    /// Fresh random secrets.
    pub fn generate() -> Result<Self> {
        let random = || -> Result<String> {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("CSPRNG: {error}"))?;
            Ok(BASE64.encode(bytes))
        };
        Ok(Self {
            peppers: format!("1:{}", random()?),
            signing_secret: random()?,
            edge_secret: random()?,
        })
    }

    /// The edge secret, for signing requests to an edge.
    pub fn sync_secret(&self) -> Result<SyncSecret> {
        Ok(SyncSecret::new(BASE64.decode(&self.edge_secret)?)?)
    }

    /// The peppers, parsed (to digest keys a test makes itself).
    pub fn pepper_set(&self) -> Result<PepperSet> {
        self.peppers
            .parse()
            .map_err(|error| anyhow::anyhow!("peppers: {error}"))
    }
}

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

/// One running control-plane instance.
pub struct ControlPlane {
    pub(crate) service: Option<Service>,
    /// Base URL.
    pub url: String,
    pub(crate) listen: String,
    pub(crate) data_dir: PathBuf,
    /// `--database-url`; `None`: the SQLite file in its data directory.
    pub(crate) database_url: Option<String>,
}

impl ControlPlane {
    /// Its data directory (the SQLite file and `secrets.json`), for `keyplane` operator commands.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

/// One edge: its options and, while it runs, its process.
pub struct Edge {
    /// How it is started.
    pub options: EdgeOptions,
    service: Option<Service>,
}

/// Control plane + origin + edges.
pub struct Deployment {
    pub(crate) setup: Setup,
    /// The shared secrets.
    pub secrets: DeploymentSecrets,
    /// The test origin.
    pub origin: Origin,
    /// The control plane (its first instance, which made the first organization).
    pub control_plane: ControlPlane,
    /// Its further instances on the same database ([`Topology::instances`]).
    pub(crate) more_instances: Vec<ControlPlane>,
    /// The edges.
    pub edges: Vec<Edge>,
    /// The bootstrap organization's admin key.
    pub admin_key: String,
    /// The first owner's one-time setup link, as the first start printed it.
    pub setup_link: String,
}

impl Deployment {
    /// Starts the control plane, the origin and `edges` edges (each adjusted by `adjust`), and
    /// waits until every edge has loaded the control plane's table.
    pub fn start(setup: &Setup, edges: usize, adjust: impl Fn(&mut EdgeOptions)) -> Result<Self> {
        Self::start_with(setup, &Topology::sqlite(edges), adjust)
    }

    /// Starts `topology`: its control-plane instances one after the other (the first makes
    /// the first organization), the origin, and its edges (each adjusted by `adjust`), edge
    /// `i` pulling from instance `i % instances`; waits until every edge has loaded the table.
    pub fn start_with(
        setup: &Setup,
        topology: &Topology,
        adjust: impl Fn(&mut EdgeOptions),
    ) -> Result<Self> {
        let secrets = DeploymentSecrets::generate()?;
        let origin = Origin::start()?;
        let database_url = topology.database_url.as_deref();
        let control_plane = ControlPlane::launch(setup, &secrets, database_url)?;
        let first = control_plane.service.as_ref().context("just started")?;
        let admin_key = admin_key_of(first)?;
        let setup_link = setup_link_of(first)?;
        let more_instances = (1..topology.instances.max(1))
            .map(|_| ControlPlane::launch(setup, &secrets, database_url))
            .collect::<Result<Vec<_>>>()?;
        let mut deployment = Self {
            setup: setup.clone(),
            secrets,
            origin,
            control_plane,
            more_instances,
            edges: Vec::new(),
            admin_key,
            setup_link,
        };
        for index in 0..topology.edges {
            let pulls_from = deployment.instance_url(index % topology.instances.max(1));
            let mut options = EdgeOptions::new(
                &format!("edge-{index}"),
                &pulls_from,
                &deployment.origin.url,
            );
            options.persist_dir = Some(fresh_dir(&format!("edge-{index}"))?);
            adjust(&mut options);
            deployment.edges.push(Edge {
                options,
                service: None,
            });
            deployment.start_edge(index)?;
        }
        Ok(deployment)
    }

    /// Starts (or restarts) edge `index` on its port and storage, and waits until it answers
    /// with its table loaded.
    pub fn start_edge(&mut self, index: usize) -> Result<()> {
        self.launch_edge(index)?;
        // The first status call loads the table (and registers the edge by pulling).
        self.edge_status(index)?;
        Ok(())
    }

    /// Starts (or restarts) edge `index` and returns once it listens, before anything has
    /// asked it for its table.
    pub fn launch_edge(&mut self, index: usize) -> Result<()> {
        let edge = self.edges.get_mut(index).context("no such edge")?;
        let service = self.setup.start_edge_with(&edge.options, &self.secrets)?;
        edge.service = Some(service);
        Ok(())
    }

    /// Stops edge `index` (its storage stays).
    pub fn stop_edge(&mut self, index: usize) {
        if let Some(edge) = self.edges.get_mut(index) {
            drop(edge.service.take());
        }
    }

    /// Kills edge `index` with SIGKILL, as a crash would (its storage stays).
    pub fn kill_edge(&mut self, index: usize) {
        if let Some(service) = self
            .edges
            .get_mut(index)
            .and_then(|edge| edge.service.take())
        {
            service.signal("KILL");
            drop(service);
        }
    }

    /// A management API call with the admin key.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply> {
        let authorization = format!("Bearer {}", self.admin_key);
        crate::send(
            method,
            &format!("{}{path}", self.control_plane.url),
            &[("authorization", &authorization)],
            body.as_ref(),
        )
    }

    /// Creates a key; returns its id and the full key.
    pub fn create_key(&self, body: Value) -> Result<(String, String)> {
        let reply = self.api("POST", "/v1/keys", Some(body))?;
        if reply.status != 201 {
            bail!("creating a key: {reply:?}");
        }
        let created = reply.json()?;
        let id = created["record"]["id"]
            .as_str()
            .context("record.id")?
            .to_owned();
        let key = created["key"].as_str().context("key")?.to_owned();
        Ok((id, key))
    }

    /// The base URL of edge `index` (empty when there is none).
    pub fn edge_url(&self, index: usize) -> String {
        self.edges
            .get(index)
            .map(|edge| edge.options.url())
            .unwrap_or_default()
    }

    /// The process group of edge `index` while it runs (its node harness and workerd).
    pub fn edge_process_group(&self, index: usize) -> Option<u32> {
        self.edges.get(index)?.service.as_ref().map(Service::pid)
    }

    /// The first control plane's process id while it runs (it leads its own process group).
    pub fn control_plane_pid(&self) -> Option<u32> {
        self.control_plane.service.as_ref().map(Service::pid)
    }

    /// Sends `signal` to edge `index`'s process group (while it runs); [`Deployment::kill_edge`]
    /// or [`Deployment::stop_edge`] reaps it.
    pub fn signal_edge(&self, index: usize, signal: &str) {
        if let Some(group) = self.edge_process_group(index) {
            crate::signal_group(group, signal);
        }
    }

    /// `GET <edge><path>` with the key in `x-api-key` (none when `key` is `None`).
    pub fn through_edge(&self, index: usize, path: &str, key: Option<&str>) -> Result<Reply> {
        let url = format!("{}{path}", self.edge_url(index));
        match key {
            Some(key) => crate::get(&url, &[("x-api-key", key)]),
            None => crate::get(&url, &[]),
        }
    }

    /// The edge's signed status: `{"edge", "applied_seq", "keys"}`.
    pub fn edge_status(&self, index: usize) -> Result<Value> {
        self.status_at(&self.edge_url(index))
    }

    /// Waits until key `key_id`'s usage holds request `request_id`'s event with `status` (the
    /// status its caller got), then checks that edge 0 holds no usage event still waiting for
    /// its request's answer.
    pub fn wait_for_usage_event(&self, key_id: &str, request_id: &str, status: u16) -> Result<()> {
        self.wait_for(
            Duration::from_secs(15),
            &format!("the {status} in the key's usage"),
            || {
                let usage = self
                    .api("GET", &format!("/v1/keys/{key_id}/usage"), None)?
                    .json()?;
                Ok(usage["data"].as_array().is_some_and(|events| {
                    events
                        .iter()
                        .any(|event| event["request_id"] == request_id && event["status"] == status)
                }))
            },
        )?;
        let edge = self.edge_status(0)?;
        if edge["usage_awaiting_answers"] != 0 {
            bail!("usage events still waiting for their answers: {edge}");
        }
        Ok(())
    }

    /// The signed status of the edge isolate at `isolate_url` (its own copy of the table; the
    /// store's figures are the edge's).
    pub fn status_at(&self, isolate_url: &str) -> Result<Value> {
        let path = "/__keyplane/status";
        let reply = signed(&self.secrets, "GET", isolate_url, path, Vec::new())?;
        if reply.status != 200 {
            bail!("{isolate_url} status: {reply:?}");
        }
        reply.json()
    }

    /// Waits until `check` holds, polling every 10 ms, failing after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut last_error = None;
        loop {
            // A failed check (a reset connection, a slow answer) is "not yet": the condition
            // may still come true within the timeout.
            match check() {
                Ok(true) => return Ok(start.elapsed()),
                Ok(false) => {}
                Err(error) => last_error = Some(error),
            }
            if start.elapsed() > timeout {
                match last_error {
                    Some(error) => {
                        bail!("{what}: still not true after {timeout:?} (last error: {error:#})")
                    }
                    None => bail!("{what}: still not true after {timeout:?}"),
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Deployment {
    /// Creates another organization with `keyplane bootstrap` beside the running control plane
    /// (same database and secrets); its admin key.
    pub fn another_organization(&self, name: &str) -> Result<String> {
        let data_dir = self.control_plane.data_dir.display().to_string();
        let printed = self.setup.keyplane_with_secrets(
            &["bootstrap", "--name", name, "--data-dir", &data_dir],
            &self.secrets,
        )?;
        printed
            .lines()
            .find_map(|line| {
                line.rsplit_once("(store it now): ")
                    .map(|(_, key)| key.trim().to_owned())
            })
            .with_context(|| format!("keyplane bootstrap printed no admin key: {printed}"))
    }
}

/// The admin key a control plane printed on its first start.
pub(crate) fn admin_key_of(service: &Service) -> Result<String> {
    service
        .preamble
        .iter()
        .find_map(|line| {
            line.rsplit_once("(store it now): ")
                .map(|(_, key)| key.trim().to_owned())
        })
        .context("the control plane printed no admin key on its first start")
}

fn setup_link_of(service: &Service) -> Result<String> {
    service
        .preamble
        .iter()
        .find_map(|line| {
            line.rsplit_once("valid 7 days: ")
                .map(|(_, link)| link.trim().to_owned())
        })
        .context("the control plane printed no setup link on its first start")
}

/// Sends a request signed with the deployment's edge secret.
pub fn signed(
    secrets: &DeploymentSecrets,
    method: &str,
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = sync::sign_now(
        &secrets.sync_secret()?,
        i64::try_from(now)?,
        &SignedRequest {
            method,
            path_and_query: path,
            body: &body,
        },
    )
    .map_err(|error| anyhow::anyhow!("CSPRNG: {error}"))?;
    let url = format!("{base}{path}");
    let headers = [
        (sync::SIGNATURE_HEADER, header.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    crate::send_bytes(method, &url, &headers, (method != "GET").then_some(body))
}
