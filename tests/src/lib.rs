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

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

mod bare_workerd;
mod browser;
mod deployment;
mod feed_proxy;
mod instances;
mod origin;
mod ports;
mod postgres;
mod pushes;
mod raw_http;
mod store_faults;
mod tcp_proxy;

pub use browser::{BrowserTools, ScriptRun};
pub use deployment::{
    ControlPlane, Deployment, DeploymentSecrets, Edge, EdgeOptions, EdgeRuntime, EdgeWorker, signed,
};
pub use feed_proxy::{FeedProxy, Tamper};
pub use instances::Topology;
pub use origin::{Origin, Received};
pub use ports::free_port;
pub use postgres::TestDatabase;
pub use pushes::{EdgeFeed, synthetic_key, synthetic_keys};
pub use raw_http::raw_request;
pub use store_faults::{Damage, StorageLock, corrupt_stored_snapshot, forget_batches_head};
pub use tcp_proxy::{Link, TcpProxy};

/// How long a service may take to print its URL.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A started process (leading its own process group) and the base URL it printed.
pub struct Service {
    name: &'static str,
    child: Child,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The lines it printed on stdout before the URL.
    pub preamble: Vec<String>,
}

/// Starts `command` leading its own process group, stdin and stdout piped (its stdin closing
/// tells the edge harness to stop); the child and its stdout.
fn spawn_in_own_group(
    name: &str,
    command: &mut Command,
) -> Result<(Child, std::process::ChildStdout)> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}: {command:?}"))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    Ok((child, stdout))
}

impl Service {
    fn start(
        name: &'static str,
        command: &mut Command,
        url_from_line: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> Result<Self> {
        let (child, stdout) = spawn_in_own_group(name, command)?;
        let (found, url) = mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            let mut preamble = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match found.as_ref().and_then(|_| url_from_line(&line)) {
                    Some(url) => {
                        if let Some(found) = found.take() {
                            let _ = found.send((url, std::mem::take(&mut preamble)));
                        }
                    }
                    None if found.is_some() => preamble.push(line),
                    None => println!("[{name}] {line}"),
                }
            }
        });
        let mut service = Self {
            name,
            child,
            url: String::new(),
            preamble: Vec::new(),
        };
        match url.recv_timeout(START_TIMEOUT) {
            Ok((url, preamble)) => {
                service.url = url;
                service.preamble = preamble;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("{name} did not print its URL within {START_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = service.wait_timeout(Duration::from_secs(5));
                bail!("{name} closed its output before printing its URL (exit: {status:?})")
            }
        }
        Ok(service)
    }

    /// Starts `command` (a server that prints nothing useful when it is up) and returns once
    /// `ready` holds, polled every 20 ms; `url` is its base URL.
    fn start_when_ready(
        name: &'static str,
        command: &mut Command,
        url: String,
        ready: impl Fn() -> bool,
    ) -> Result<Self> {
        let (child, stdout) = spawn_in_own_group(name, command)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("[{name}] {line}");
            }
        });
        let mut service = Self {
            name,
            child,
            url,
            preamble: Vec::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready() {
            if let Some(status) = service.child.try_wait()? {
                bail!("{name} exited before it was ready ({status})");
            }
            if Instant::now() >= deadline {
                bail!("{name} was not ready within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(service)
    }

    /// The OS process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `TERM`) to the service's process group.
    pub fn signal(&self, signal: &str) {
        signal_group(self.pid(), signal);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    /// Closes stdin (the edge harness disposes of workerd on that), asks politely with
    /// SIGTERM, and kills the whole group if it is not gone within a few seconds.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal("TERM");
            if self.wait_timeout(Duration::from_secs(5)).is_err() {
                eprintln!("{} ignored SIGTERM; killing its process group", self.name);
            }
        }
        signal_group(self.pid(), "KILL");
        let _ = self.child.wait();
        // The leader is reaped, but workerd (its child) may still hold the port and the
        // storage files a restart on the same port is about to need.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(self.pid()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain-HTTP answer: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    /// The body as text (lossy for binary bodies).
    pub body: String,
    /// The body's bytes.
    pub bytes: Vec<u8>,
}

impl Reply {
    /// Every header, as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {}", self.body))
    }
}

/// `GET url` with `headers`; 4xx/5xx are answers, not errors.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    send("GET", url, headers, None)
}

/// `GET url` giving up after `timeout`.
pub fn get_with_timeout(url: &str, timeout: Duration) -> Result<Reply> {
    request_bytes("GET", url, &[], None, timeout)
}

/// `method url` with `headers` and an optional JSON body; 4xx/5xx are answers, not errors.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
) -> Result<Reply> {
    send_bytes(
        method,
        url,
        headers,
        json.map(|value| value.to_string().into_bytes()),
    )
}

/// `method url` with `headers` and optional body bytes.
pub fn send_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Reply> {
    request_bytes(method, url, headers, body, Duration::from_secs(10))
}

fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Reply> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    let sent = match body {
        Some(body) => request.body(body).map(|request| agent.run(request)),
        None => request.body(()).map(|request| agent.run(request)),
    };
    let mut response = sent
        .with_context(|| format!("building {method} {url}"))?
        .with_context(|| format!("{method} {url}"))?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .context("reading the body")?;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply {
        status: response.status().as_u16(),
        headers,
        body,
        bytes,
    })
}

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

/// Whether any process of group `pgid` is left (`kill -0` succeeds).
fn group_alive(pgid: u32) -> bool {
    kill(&["-0", "--", &format!("-{pgid}")])
}

/// Sends `signal` to every process of group `pgid`.
pub(crate) fn signal_group(pgid: u32, signal: &str) {
    kill(&["-s", signal, "--", &format!("-{pgid}")]);
}

/// Runs kill(1) with `args`, keeping this crate free of `unsafe`; whether it succeeded.
fn kill(args: &[&str]) -> bool {
    Command::new("kill")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
