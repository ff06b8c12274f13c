//! What the dashboard's browser test (`tests/tests/e2e/dashboard.rs`) needs besides the node
//! tools: Debian's Chromium (and its WebDriver, for anyone driving it by hand), and the npm
//! packages of `tests/browser` (playwright-core to drive it, axe-core to audit each page).
//!
//! Both steps check first: Chromium is installed with `apt-get` only when `/usr/bin/chromium`
//! is missing (as root; otherwise the error says what to install), and `npm ci` runs only when
//! `tests/browser/node_modules` was not installed from the current manifest and lock.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::run::{self, announce, probe};
use crate::setup::hex;
use crate::tools::Tools;

/// Where Debian's `chromium` package puts the browser (the test's default too).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The Debian packages providing it.
const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];
/// Inside `node_modules`, so that `npm ci` (which empties the folder) removes it as well.
const STAMP: &str = ".keyplane-stamp";

/// Installs Chromium and the browser test's npm packages, skipping what is present.
pub fn setup(tools: &Tools) -> Result<()> {
    chromium()?;
    npm_packages(tools)
}

fn chromium() -> Result<()> {
    announce(&format!(
        "chromium (Debian packages {})",
        PACKAGES.join(", ")
    ));
    if Path::new(CHROMIUM).exists() {
        let version = probe(Command::new(CHROMIUM).arg("--version"));
        println!(
            "    present ({}), skipping",
            version.as_deref().unwrap_or(CHROMIUM).trim()
        );
        return Ok(());
    }
    if !running_as_root()? {
        bail!(
            "{CHROMIUM} is missing and this is not root, so setup cannot install it: run \
             `sudo apt-get install -y {}` (the dashboard's browser test drives it)",
            PACKAGES.join(" ")
        );
    }
    // A fresh image may have empty package lists: refresh them first.
    run::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !Path::new(CHROMIUM).exists() {
        bail!("apt-get installed {PACKAGES:?} but {CHROMIUM} is still missing");
    }
    Ok(())
}

/// Whether this process runs as root (the owner of `/proc/self`).
fn running_as_root() -> Result<bool> {
    let me = fs::metadata("/proc/self").context("reading /proc/self to learn the user id")?;
    Ok(me.uid() == 0)
}

/// `npm ci` in `tests/browser`, skipped while the stamp matches the manifest and lock.
fn npm_packages(tools: &Tools) -> Result<()> {
    announce("browser test packages (playwright-core, axe-core) via npm ci in tests/browser");
    let dir = browser_dir(tools);
    let manifest =
        fs::read(dir.join("package.json")).context("reading tests/browser/package.json")?;
    let lock = fs::read(dir.join("package-lock.json"))
        .context("reading tests/browser/package-lock.json")?;
    let stamp = hex(&Sha256::new()
        .chain_update(&manifest)
        .chain_update(&lock)
        .finalize());
    let modules = dir.join("node_modules");
    let stamp_path = modules.join(STAMP);
    let up_to_date = fs::read_to_string(&stamp_path).is_ok_and(|found| found.trim() == stamp)
        && ["playwright-core", "axe-core"]
            .iter()
            .all(|package| modules.join(package).join("package.json").exists());
    if up_to_date {
        println!("    present (lock hash {}), skipping", &stamp[..12]);
        return Ok(());
    }
    run::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
    )?;
    fs::write(&stamp_path, format!("{stamp}\n")).context("writing the browser packages stamp")?;
    Ok(())
}

/// `tests/browser`: the script, its manifest and lock, and its `node_modules`.
fn browser_dir(tools: &Tools) -> PathBuf {
    tools.root.join("tests").join("browser")
}
