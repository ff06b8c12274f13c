//! `cargo xtask setup`: installs the project-local toolchain, skipping whatever is present.
//!
//! Everything comes from a registry (crates.io, npm, PyPI): downloads from GitHub releases do not
//! work on the machines this runs on (see TOOLCHAIN.md), except Chromium for the dashboard's
//! browser test, which comes from Debian ([`browser`]). Each step checks first, so a second
//! run only costs a few probes.

use std::fs;
use std::process::Command;

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};

use crate::browser;
use crate::python;
use crate::run::{self, announce, probe};
use crate::tools::{self, Tools};

/// The rustc target the edge worker and the wasm tests build for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// worker-build's version, matching the `worker` crate (0.8.7).
pub const WORKER_BUILD_VERSION: &str = "0.8.7";
const NODE_STAMP: &str = ".keyplane-stamp";

/// Installs everything the tests and the dev loop need.
pub fn setup(tools: &Tools) -> Result<()> {
    toolchain(tools)?;
    python::setup(tools)?;
    println!("xtask setup: done");
    Ok(())
}

/// Installs what building and running Keyplane need (`cargo xtask build`, `dev`, the
/// benchmarks): all but the Python tools, which only the tests use.
pub fn toolchain(tools: &Tools) -> Result<()> {
    println!("xtask setup: toolchain in {}", tools.dir.display());
    fs::create_dir_all(&tools.dir).with_context(|| format!("creating {}", tools.dir.display()))?;
    wasm_target()?;
    worker_build(tools)?;
    wasm_bindgen(tools)?;
    node_tools(tools)?;
    browser::setup(tools)
}

fn wasm_target() -> Result<()> {
    announce(&format!("rust target {WASM_TARGET}"));
    let installed = probe(Command::new("rustup").args(["target", "list", "--installed"]));
    if installed.is_some_and(|list| list.lines().any(|line| line.trim() == WASM_TARGET)) {
        println!("    present, skipping");
        return Ok(());
    }
    run::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn worker_build(tools: &Tools) -> Result<()> {
    announce(&format!("worker-build {WORKER_BUILD_VERSION}"));
    let version = probe(Command::new(tools.cargo_bin("worker-build")).arg("--version"));
    if version
        .as_deref()
        .is_some_and(|v| v.split_whitespace().last() == Some(WORKER_BUILD_VERSION))
    {
        println!("    present, skipping");
        return Ok(());
    }
    cargo_install(
        tools,
        &[
            "worker-build",
            "--version",
            WORKER_BUILD_VERSION,
            "--locked",
        ],
    )
}

/// wasm-bindgen's CLI must be exactly the library version in Cargo.lock. Not `--locked`:
/// one of the CLI's locked dependencies is missing from the registry.
fn wasm_bindgen(tools: &Tools) -> Result<()> {
    let lock_path = tools.root.join("Cargo.lock");
    let lock = fs::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    let wanted = tools::locked_version(&lock, "wasm-bindgen")?;
    announce(&format!(
        "wasm-bindgen-cli {wanted} (the wasm-bindgen in Cargo.lock)"
    ));
    let found = probe(Command::new(tools.cargo_bin("wasm-bindgen")).arg("--version"));
    if found.as_deref() == Some(format!("wasm-bindgen {wanted}").as_str()) {
        println!("    present, skipping");
        return Ok(());
    }
    if let Some(found) = found {
        println!("    found {found}, replacing it");
    }
    cargo_install(
        tools,
        &["wasm-bindgen-cli", "--version", &wanted, "--force"],
    )
}

/// `cargo install <args> --root <tools>/cargo`, built in cargo's own temporary target dir.
pub fn cargo_install(tools: &Tools, args: &[&str]) -> Result<()> {
    println!("    installing (a few minutes on 2 cores)");
    let mut command = Command::new(tools::cargo_program());
    command
        .arg("install")
        .args(args)
        .arg("--root")
        .arg(tools.cargo_root())
        .env_remove("CARGO_TARGET_DIR")
        .env("RUST_BACKTRACE", "0");
    run::run(&mut command)
}

/// Node 22, wrangler 4, miniflare 4, binaryen (wasm-opt), esbuild: `npm ci` from the committed
/// manifest and lock in `xtask/node`, skipped while the stamp matches their hash.
fn node_tools(tools: &Tools) -> Result<()> {
    announce("node tools (node 22, wrangler 4, miniflare 4, wasm-opt, esbuild) via npm ci");
    let manifest = tools.node_manifest_dir();
    let package =
        fs::read(manifest.join("package.json")).context("reading xtask/node/package.json")?;
    let lock = fs::read(manifest.join("package-lock.json"))
        .context("reading xtask/node/package-lock.json")?;
    let stamp = hex(&Sha256::new()
        .chain_update(&package)
        .chain_update(&lock)
        .finalize());
    let node_dir = tools.node_dir();
    let stamp_path = node_dir.join(NODE_STAMP);
    let up_to_date = fs::read_to_string(&stamp_path).is_ok_and(|found| found.trim() == stamp)
        && tools.node_bin("node").exists();
    if up_to_date {
        println!("    present (lock hash {}), skipping", &stamp[..12]);
        return Ok(());
    }
    fs::create_dir_all(&node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
    let _ = fs::remove_file(&stamp_path);
    fs::write(node_dir.join("package.json"), &package).context("copying package.json")?;
    fs::write(node_dir.join("package-lock.json"), &lock).context("copying package-lock.json")?;
    // npm itself runs on the machine's node (20 is fine for npm); the installed tools run on 22.
    run::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&node_dir),
    )?;
    let node_version = probe(Command::new(tools.node_bin("node")).arg("--version"))
        .context("node 22 did not install: node_modules/.bin/node does not run")?;
    println!("    node {node_version}");
    fs::write(&stamp_path, format!("{stamp}\n")).context("writing the node tools stamp")?;
    Ok(())
}

/// Lower-case hex of `bytes` (the stamps' hashes).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
