//! End-to-end harness: starts the real `keyplane` binary and the real edge worker under
//! workerd (through miniflare 4, `harness/edge.mjs`, or under the bare workerd binary with a
//! generated config, `src/bare_workerd.rs`), and two small HTTP clients to talk to them ([`send`] for well-formed URLs,
//! [`raw_request`] for request-targets that must reach the server byte for byte).
//!
//! The tests themselves live in `tests/e2e/` and are `#[ignore]`d, so a plain
//! `cargo test --workspace` does not need the built worker; `cargo xtask test` builds
//! everything and runs them with `--ignored`. They find what they start through env vars
//! that xtask sets (defaults in brackets, relative to the workspace root):
//!
//! | variable | what | default |
//! |---|---|---|
//! | `KEYPLANE_NODE` | Node 22 | `.tools/node/node_modules/.bin/node` |
//! | `KEYPLANE_NODE_MODULES` | the node_modules holding miniflare | `.tools/node/node_modules` |
//! | `KEYPLANE_WORKERD` | the workerd binary (bare-workerd edges) | `<KEYPLANE_NODE_MODULES>/.bin/workerd` |
//! | `KEYPLANE_EDGE_BUILD` | worker-build's output | `edge/build` |
//! | `KEYPLANE_BIN` | the `keyplane` binary | `<target>/debug/keyplane` (what `cargo xtask build` makes), for benchmarks too |
//!
//! The dashboard's browser test also needs Chromium and `tests/browser/node_modules`
//! ([`BrowserTools`]).
//!
//! When something is missing, a test prints why and passes, unless `CI=true` or
//! `KEYPLANE_E2E_REQUIRED=1`, where it fails with that message.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

mod bare_workerd;
mod browser;
mod deployment;
mod edge_options;
mod feed_proxy;
mod http;
mod instances;
mod origin;
mod ports;
mod postgres;
mod pushes;
mod raw_http;
mod service;
mod store_faults;
mod tcp_proxy;

pub use browser::{BrowserTools, ScriptRun};
pub use deployment::{ControlPlane, Deployment, DeploymentSecrets, Edge, signed};
pub use edge_options::{EdgeOptions, EdgeRuntime, EdgeWorker};
pub use feed_proxy::{FeedProxy, Tamper};
pub use http::{Reply, get, get_with_timeout, send, send_bytes, send_with_timeout};
pub use instances::Topology;
pub use origin::{Origin, Received};
pub use ports::free_port;
pub use postgres::TestDatabase;
pub use pushes::{EdgeFeed, synthetic_key, synthetic_keys};
pub use raw_http::{raw_request, raw_request_with_body};
pub use service::Service;
pub(crate) use service::signal_group;
pub use store_faults::{Damage, StorageLock, corrupt_stored_snapshot, forget_batches_head};
pub use tcp_proxy::{Link, TcpProxy};

/// Where the things under test are, resolved from the environment.
#[derive(Debug, Clone)]
pub struct Setup {
    node: PathBuf,
    node_modules: PathBuf,
    workerd: PathBuf,
    edge_build: PathBuf,
    keyplane_bin: PathBuf,
}

impl Setup {
    /// Resolves every path; `None` (after printing why) when something is missing and the
    /// environment does not require end-to-end tests. Panics when it does.
    pub fn from_env() -> Option<Self> {
        let root = workspace_root();
        let node_modules = path_var("KEYPLANE_NODE_MODULES", || {
            root.join(".tools/node/node_modules")
        });
        let setup = Self {
            node: path_var("KEYPLANE_NODE", || {
                root.join(".tools/node/node_modules/.bin/node")
            }),
            workerd: path_var("KEYPLANE_WORKERD", || node_modules.join(".bin/workerd")),
            node_modules,
            edge_build: path_var("KEYPLANE_EDGE_BUILD", || root.join("edge/build")),
            keyplane_bin: path_var("KEYPLANE_BIN", default_keyplane_bin),
        };
        let missing: Vec<String> = [
            ("node 22 (KEYPLANE_NODE)", setup.node.clone()),
            (
                "miniflare (KEYPLANE_NODE_MODULES)",
                setup.node_modules.join("miniflare"),
            ),
            ("workerd (KEYPLANE_WORKERD)", setup.workerd.clone()),
            (
                "the built worker (KEYPLANE_EDGE_BUILD)",
                setup.edge_build.join("index.js"),
            ),
            (
                "the keyplane binary (KEYPLANE_BIN)",
                setup.keyplane_bin.clone(),
            ),
        ]
        .into_iter()
        .filter(|(_, path)| !path.exists())
        .map(|(what, path)| format!("{what} at {}", path.display()))
        .collect();
        if missing.is_empty() {
            return Some(setup);
        }
        let message = format!(
            "end-to-end test needs what `cargo xtask test` builds; missing: {}",
            missing.join("; ")
        );
        if required() {
            panic!("{message}");
        }
        eprintln!("SKIPPED: {message}");
        None
    }

    /// Starts the worker under workerd (miniflare) on a free port, without a control plane
    /// or origin behind it (placeholder settings).
    pub fn start_edge(&self) -> Result<Service> {
        let secrets = DeploymentSecrets::generate()?;
        let options = EdgeOptions::new("edge", "http://127.0.0.1:9", "http://127.0.0.1:9");
        self.start_edge_with(&options, &secrets)
    }

    /// Starts an edge as `options` say: under workerd through miniflare, or under the bare
    /// workerd binary ([`EdgeOptions::runtime`]).
    pub fn start_edge_with(
        &self,
        options: &EdgeOptions,
        secrets: &DeploymentSecrets,
    ) -> Result<Service> {
        if options.runtime == EdgeRuntime::BareWorkerd {
            return bare_workerd::start(self, options, secrets);
        }
        let script = workspace_root().join("tests/harness/edge.mjs");
        let mut command = Command::new(&self.node);
        command
            .arg(script)
            .arg(options.edge_build.as_ref().unwrap_or(&self.edge_build))
            .arg(options.ports_argument())
            .env("KEYPLANE_NODE_MODULES", &self.node_modules)
            .env(
                "KEYPLANE_EDGE_BINDINGS",
                options.bindings(secrets).to_string(),
            )
            .env("KEYPLANE_EDGE_MODE", options.worker.mode());
        if let Some(dir) = &options.persist_dir {
            command.env("KEYPLANE_EDGE_PERSIST", dir);
        }
        Service::start("edge (miniflare)", &mut command, |line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(value.get("url")?.as_str()?.trim_end_matches('/').to_owned())
        })
    }

    /// The `keyplane` binary under test.
    pub fn keyplane_bin(&self) -> &Path {
        &self.keyplane_bin
    }

    /// Node 22, which runs the harness and the browser scripts.
    pub fn node(&self) -> &Path {
        &self.node
    }

    /// Runs `keyplane <args> <dir>` to completion; its stdout, or an error with its stderr.
    pub fn keyplane(&self, args: &[&str], dir: &Path) -> Result<String> {
        let output = Command::new(&self.keyplane_bin)
            .args(args)
            .arg(dir)
            .env("RUST_BACKTRACE", "0")
            // Local edges listen on http://127.0.0.1.
            .env("KEYPLANE_LOCAL_DEV", "true")
            .output()
            .context("running keyplane")?;
        if !output.status.success() {
            bail!(
                "keyplane {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `keyplane <args>` with a deployment's secrets in the environment (operator commands
    /// that write keys, so their digests use the running control plane's peppers).
    pub fn keyplane_with_secrets(
        &self,
        args: &[&str],
        secrets: &DeploymentSecrets,
    ) -> Result<String> {
        let output = Command::new(&self.keyplane_bin)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("KEYPLANE_LOCAL_DEV", "true")
            .env("KEYPLANE_PEPPERS", &secrets.peppers)
            .env("KEYPLANE_SIGNING_SECRET", &secrets.signing_secret)
            .env("KEYPLANE_EDGE_SECRET", &secrets.edge_secret)
            .output()
            .context("running keyplane")?;
        if !output.status.success() {
            bail!(
                "keyplane {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `keyplane serve` on port 0 with a fresh data directory and generated secrets.
    pub fn start_control_plane(&self) -> Result<Service> {
        let secrets = DeploymentSecrets::generate()?;
        self.start_control_plane_with(&secrets, &fresh_dir("control-plane")?, "127.0.0.1:0")
    }

    /// Starts `keyplane serve` with `secrets` on `data_dir`, listening on `listen`.
    pub fn start_control_plane_with(
        &self,
        secrets: &DeploymentSecrets,
        data_dir: &Path,
        listen: &str,
    ) -> Result<Service> {
        self.start_control_plane_on(secrets, data_dir, listen, None)
    }

    /// [`Setup::start_control_plane_with`] on `database_url` (`None`: the SQLite file in
    /// `data_dir`).
    pub fn start_control_plane_on(
        &self,
        secrets: &DeploymentSecrets,
        data_dir: &Path,
        listen: &str,
        database_url: Option<&str>,
    ) -> Result<Service> {
        let mut command = Command::new(&self.keyplane_bin);
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        command
            .env("RUST_LOG", "warn")
            // Local edges listen on http://127.0.0.1.
            .env("KEYPLANE_LOCAL_DEV", "true")
            .env("KEYPLANE_PEPPERS", &secrets.peppers)
            .env("KEYPLANE_SIGNING_SECRET", &secrets.signing_secret)
            .env("KEYPLANE_EDGE_SECRET", &secrets.edge_secret);
        // A test that trusts a (test) GitHub secret-scanning key puts its list here.
        let github_keys = data_dir.join(GITHUB_SCANNING_KEYS_FILE);
        if github_keys.exists() {
            command.arg("--github-scanning-keys").arg(github_keys);
        }
        Service::start("control plane", &mut command, |line| {
            line.strip_prefix("keyplane listening on ")
                .map(str::to_owned)
        })
    }
}

/// The file in a deployment's data directory that, when present, makes the control plane
/// accept GitHub secret-scanning reports signed by the keys it lists.
pub const GITHUB_SCANNING_KEYS_FILE: &str = "github-scanning-keys.json";

/// Whether the environment requires end-to-end tests to run (CI).
pub fn required() -> bool {
    let set = |name: &str, wanted: &[&str]| {
        std::env::var(name).is_ok_and(|value| wanted.contains(&value.to_ascii_lowercase().as_str()))
    };
    set("CI", &["true", "1"]) || set("KEYPLANE_E2E_REQUIRED", &["1", "true"])
}

pub(crate) fn path_var(name: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => default(),
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `<target>/debug/keyplane`, the binary `cargo xtask build` makes, for a test or benchmark
/// binary in `<target>/<profile>/deps/`: a benchmark (in `release/deps/`) takes the same one,
/// not a `release/keyplane` that nothing it runs keeps up to date.
fn default_keyplane_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("debug/keyplane")))
        .unwrap_or_else(|| workspace_root().join("target/debug/keyplane"))
}

/// A new empty directory under the system's temp dir.
pub fn fresh_dir(purpose: &str) -> Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("keyplane-e2e-{purpose}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
