//! The built worker under the pinned workerd binary with no miniflare in front: what a
//! self-hosted or differently fronted deployment runs.
//!
//! miniflare (and so `wrangler dev` and the default harness) puts its own entry worker in front
//! of the edge, which re-parses every URL before the edge sees it. Here workerd serves the edge
//! directly, from a Cap'n Proto config written per start ([`config`]): the three modules
//! worker-build emits, both Durable Object classes (the key table store SQLite-backed), the
//! vars and secrets as text bindings, and storage on local disk (workerd offers the SQL API
//! only there, so an edge without a persistence directory gets a fresh one).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{DeploymentSecrets, EdgeOptions, EdgeWorker, Service, Setup, fresh_dir};

/// Starts the edge `options` describe under bare workerd; the [`Service`] is returned once
/// `/__keyplane/health` answers 200.
pub(crate) fn start(
    setup: &Setup,
    options: &EdgeOptions,
    secrets: &DeploymentSecrets,
) -> Result<Service> {
    if options.worker != EdgeWorker::Keyplane {
        bail!("bare workerd runs only the Keyplane worker");
    }
    if !options.isolate_ports.is_empty() {
        bail!("bare workerd runs one isolate per edge");
    }
    let storage = match &options.persist_dir {
        Some(dir) => dir.clone(),
        None => fresh_dir(&format!("{}-storage", options.name))?,
    };
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let config_dir = fresh_dir(&format!("{}-workerd", options.name))?;
    let config_path = config_dir.join("edge.capnp");
    let text = config(options.port, &options.bindings(secrets), &storage)?;
    std::fs::write(&config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let mut command = Command::new(&setup.workerd);
    // `--experimental`: local-disk Durable Object storage is still marked experimental.
    command
        .args(["serve", "--experimental", "--import-path"])
        .arg(options.edge_build.as_ref().unwrap_or(&setup.edge_build))
        .arg(&config_path);
    let url = options.url();
    let health = format!("{url}/__keyplane/health");
    Service::start_when_ready("edge (bare workerd)", &mut command, url, move || {
        crate::get_with_timeout(&health, Duration::from_secs(2))
            .is_ok_and(|reply| reply.status == 200)
    })
}

/// The workerd config: one socket on 127.0.0.1:`port` serving the edge worker, whose modules
/// are embedded from the import path (the edge build directory).
pub(crate) fn config(port: u16, bindings: &Value, storage: &Path) -> Result<String> {
    let Some(vars) = bindings.as_object() else {
        bail!("bindings must be a JSON object");
    };
    let mut text_bindings = String::new();
    for (name, value) in vars {
        let value = value
            .as_str()
            .with_context(|| format!("binding {name} is not a string"))?;
        writeln!(
            text_bindings,
            "    (name = {}, text = {}),",
            capnp_text(name),
            capnp_text(value)
        )?;
    }
    let storage = storage
        .to_str()
        .context("the storage directory is not UTF-8")?;
    Ok(format!(
        r#"# Written by keyplane-tests (tests/src/bare_workerd.rs) for one test run.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    (name = "storage", disk = (path = {storage}, writable = true)),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:{port}", http = (), service = "edge") ],
);

const edge :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "/index.js"),
    (name = "worker/shim.mjs", esModule = embed "/worker/shim.mjs"),
    (name = "worker/index.wasm", wasm = embed "/worker/index.wasm"),
  ],
  compatibilityDate = "2026-04-01",
  globalOutbound = "net",
  durableObjectNamespaces = [
    (className = "KeyTableStore", uniqueKey = "keyplane-key-table", enableSql = true),
    (className = "RateLimitCounter", uniqueKey = "keyplane-rate-limit-counter"),
  ],
  durableObjectStorage = (localDisk = "storage"),
  bindings = [
{text_bindings}    (name = "KEYPLANE_TABLE", durableObjectNamespace = "KeyTableStore"),
    (name = "KEYPLANE_RATE_LIMITER", durableObjectNamespace = "RateLimitCounter"),
  ],
);
"#,
        storage = capnp_text(storage),
    ))
}

/// A Cap'n Proto text literal.
fn capnp_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(capnp_text(r#"{"a":"b\c"}"#), r#""{\"a\":\"b\\c\"}""#);
        assert_eq!(capnp_text("x\ny\u{1}"), r#""x\ny\x01""#);
        assert_eq!(capnp_text("café"), "\"café\"");
    }

    #[test]
    fn every_binding_becomes_a_text_binding_next_to_the_durable_objects() {
        let bindings = serde_json::json!({"ORIGIN_URL": "http://127.0.0.1:9", "ROUTE_POLICY": "{\"rules\":[]}"});
        let text = config(20001, &bindings, Path::new("/tmp/x")).expect("config");
        assert!(text.contains(r#"(name = "ORIGIN_URL", text = "http://127.0.0.1:9"),"#));
        assert!(text.contains(r#"(name = "ROUTE_POLICY", text = "{\"rules\":[]}"),"#));
        assert!(text.contains(r#"address = "127.0.0.1:20001""#));
        assert!(text.contains(r#"disk = (path = "/tmp/x", writable = true)"#));
        assert!(config(1, &serde_json::json!({"A": 1}), Path::new("/x")).is_err());
    }
}
