//! schemathesis, which runs the API against its own OpenAPI document in the end-to-end step:
//! a Python virtual environment in `.tools/python/`, installed from the pinned
//! `xtask/python/requirements.txt` (every package and version, so a fresh machine gets the
//! same set), skipped while the stamp matches that file's hash and the Python version.

use std::fs;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::run::{self, announce, probe};
use crate::setup::hex;
use crate::tools::Tools;

const STAMP: &str = ".keyplane-stamp";

/// Creates the virtual environment and installs the pinned packages, unless already done.
pub fn setup(tools: &Tools) -> Result<()> {
    announce("python tools (schemathesis) in a virtual environment");
    let requirements = tools.root.join("xtask/python/requirements.txt");
    let pinned = fs::read(&requirements).context("reading xtask/python/requirements.txt")?;
    let version = probe(Command::new("python3").arg("--version"))
        .context("python3 is not on PATH: install Python 3.11 or later (with its venv module)")?;
    if !at_least_3_11(&version) {
        bail!("schemathesis needs Python 3.11 or later; python3 is {version}");
    }
    // The Python it was made with is part of the stamp: another one makes it again.
    let stamp = hex(&Sha256::new()
        .chain_update(&pinned)
        .chain_update(version.as_bytes())
        .finalize());
    let venv = tools.python_dir();
    let stamp_path = venv.join(STAMP);
    let up_to_date = fs::read_to_string(&stamp_path).is_ok_and(|found| found.trim() == stamp)
        && tools.schemathesis_bin().exists();
    if up_to_date {
        println!("    present (requirements hash {}), skipping", &stamp[..12]);
        return Ok(());
    }
    let _ = fs::remove_file(&stamp_path);
    run::run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    run::run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
            ])
            .arg(&requirements),
    )?;
    let version = probe(Command::new(tools.schemathesis_bin()).arg("--version"))
        .context("schemathesis did not install: its `st` does not run")?;
    println!("    {version}");
    fs::write(&stamp_path, format!("{stamp}\n")).context("writing the python tools stamp")?;
    Ok(())
}

/// Whether `python3 --version`'s answer (`Python 3.11.7`) is 3.11 or later.
fn at_least_3_11(version: &str) -> bool {
    let mut numbers = version
        .trim()
        .trim_start_matches("Python ")
        .split('.')
        .map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (3, 11),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::at_least_3_11;

    #[test]
    fn reads_python_versions() {
        assert!(at_least_3_11("Python 3.11.7"));
        assert!(at_least_3_11("Python 3.13.0\n"));
        assert!(!at_least_3_11("Python 3.9.18"));
        assert!(!at_least_3_11("Python 2.7.18"));
        assert!(!at_least_3_11("not python"));
    }
}
