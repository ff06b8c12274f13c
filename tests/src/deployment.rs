//! A whole local deployment for end-to-end tests and benchmarks: secrets shared by the control
//! plane and its edges, the control plane (temporary SQLite), a test origin, and N edges under
//! workerd, each of which can be stopped and restarted on the same port and storage (how each
//! edge is started: `edge_options`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_shared::PepperSet;
use keyplane_shared::sync::{self, SignedRequest, SyncSecret};
use serde_json::Value;

use crate::instances::Topology;
use crate::{EdgeOptions, Origin, Reply, Service, Setup, fresh_dir};

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
