//! The control plane of a deployment, one instance or several: what a test starts
//! ([`Topology`]: how many `keyplane serve` processes, on which database, with how many
//! edges), and how it talks to, stops, kills and restarts each of them.
//!
//! Instance 0 is [`Deployment::control_plane`] (the one that made the first organization);
//! the others share its secrets and database.

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::deployment::{ControlPlane, DeploymentSecrets, admin_key_of};
use crate::{Deployment, Reply, Setup, free_port, fresh_dir};

/// What a deployment is made of.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `keyplane serve` processes (at least one).
    pub instances: usize,
    /// The database they share; `None`: the SQLite file of the (only) instance.
    pub database_url: Option<String>,
    /// Edges; edge `i` pulls from instance `i % instances`.
    pub edges: usize,
}

impl Topology {
    /// One instance on its own SQLite file, with `edges` edges.
    pub fn sqlite(edges: usize) -> Self {
        Self {
            instances: 1,
            database_url: None,
            edges,
        }
    }

    /// `instances` instances on the PostgreSQL database at `database_url`.
    pub fn postgres(instances: usize, database_url: &str, edges: usize) -> Self {
        Self {
            instances,
            database_url: Some(database_url.to_owned()),
            edges,
        }
    }
}

impl ControlPlane {
    /// Starts one instance on a free port with a data directory of its own, on
    /// `database_url` (`None`: the SQLite file in that directory).
    pub(crate) fn launch(
        setup: &Setup,
        secrets: &DeploymentSecrets,
        database_url: Option<&str>,
    ) -> Result<Self> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let data_dir = fresh_dir("control-plane")?;
        let service = setup.start_control_plane_on(secrets, &data_dir, &listen, database_url)?;
        Ok(Self {
            url: service.url.clone(),
            service: Some(service),
            listen,
            data_dir,
            database_url: database_url.map(str::to_owned),
        })
    }
}

impl Deployment {
    /// How many control-plane instances it has (running or not).
    pub fn instances(&self) -> usize {
        1 + self.more_instances.len()
    }

    fn instance(&self, index: usize) -> Result<&ControlPlane> {
        match index {
            0 => Ok(&self.control_plane),
            _ => self
                .more_instances
                .get(index - 1)
                .with_context(|| format!("no control-plane instance {index}")),
        }
    }

    fn instance_mut(&mut self, index: usize) -> Result<&mut ControlPlane> {
        match index {
            0 => Ok(&mut self.control_plane),
            _ => self
                .more_instances
                .get_mut(index - 1)
                .with_context(|| format!("no control-plane instance {index}")),
        }
    }

    /// The base URL of instance `index` (empty when there is none).
    pub fn instance_url(&self, index: usize) -> String {
        self.instance(index)
            .map(|instance| instance.url.clone())
            .unwrap_or_default()
    }

    /// A management API call with the admin key, through instance `index`.
    pub fn api_via(
        &self,
        index: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply> {
        let authorization = format!("Bearer {}", self.admin_key);
        crate::send(
            method,
            &format!("{}{path}", self.instance(index)?.url),
            &[("authorization", &authorization)],
            body.as_ref(),
        )
    }

    /// Creates a key through instance `index`; its id and the full key.
    pub fn create_key_via(&self, index: usize, body: Value) -> Result<(String, String)> {
        let reply = self.api_via(index, "POST", "/v1/keys", Some(body))?;
        if reply.status != 201 {
            bail!("creating a key through instance {index}: {reply:?}");
        }
        let created = reply.json()?;
        let id = created["record"]["id"]
            .as_str()
            .context("record.id")?
            .to_owned();
        let key = created["key"].as_str().context("key")?.to_owned();
        Ok((id, key))
    }

    /// Stops the control plane (its database stays).
    pub fn stop_control_plane(&mut self) {
        drop(self.control_plane.service.take());
    }

    /// Kills the control plane with SIGKILL, as a crash would: no graceful shutdown, nothing
    /// written on the way out (its database stays).
    pub fn kill_control_plane(&mut self) {
        let _ = self.kill_instance(0);
    }

    /// Starts the control plane again on the same address and database.
    pub fn restart_control_plane(&mut self) -> Result<()> {
        self.restart_instance(0)
    }

    /// Starts the control plane again on the same address and secrets but a new, empty
    /// database (as after re-creating it): a new feed history, a new first organization,
    /// whose admin key replaces [`Deployment::admin_key`].
    pub fn restart_control_plane_on_a_new_database(&mut self) -> Result<()> {
        self.stop_control_plane();
        self.control_plane.data_dir = fresh_dir("control-plane")?;
        let service = self.setup.start_control_plane_on(
            &self.secrets,
            &self.control_plane.data_dir,
            &self.control_plane.listen,
            self.control_plane.database_url.as_deref(),
        )?;
        self.admin_key = admin_key_of(&service)?;
        self.control_plane.service = Some(service);
        Ok(())
    }

    /// Kills instance `index` with SIGKILL, as a crash would (its database stays).
    pub fn kill_instance(&mut self, index: usize) -> Result<()> {
        if let Some(service) = self.instance_mut(index)?.service.take() {
            service.signal("KILL");
            drop(service);
        }
        Ok(())
    }

    /// Starts instance `index` again on the same address, data directory and database.
    pub fn restart_instance(&mut self, index: usize) -> Result<()> {
        let setup = self.setup.clone();
        let secrets = self.secrets.clone();
        let instance = self.instance_mut(index)?;
        let service = setup.start_control_plane_on(
            &secrets,
            &instance.data_dir,
            &instance.listen,
            instance.database_url.as_deref(),
        )?;
        instance.service = Some(service);
        Ok(())
    }
}
