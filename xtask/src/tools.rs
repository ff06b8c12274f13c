//! The project-local toolchain's layout and the environment commands run under.
//!
//! Everything lives under `.tools/` at the repository root (or `$KEYPLANE_TOOLS_DIR`):
//! - `cargo/bin/`: worker-build, wasm-bindgen (+ its test runner), cargo-fuzz (`cargo install --root`);
//! - `node/`: a copy of `xtask/node/package.json` + lock, and its `node_modules` (Node 22, wrangler,
//!   miniflare, binaryen's wasm-opt, esbuild);
//! - `python/`: a virtual environment holding schemathesis (`xtask/python/requirements.txt`).
//!
//! [`Tools::command`] gives a [`Command`] with Node 22 and those tools first on `PATH`, plus
//! `WASM_BINDGEN_BIN`, `WASM_OPT_BIN` and `ESBUILD_BIN` so worker-build never tries to download
//! anything, `WRANGLER_SEND_METRICS=false` and `CLOUDFLARE_CF_FETCH_ENABLED=false` (no network).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Environment variable that moves the toolchain folder away from `<repo>/.tools`.
pub const TOOLS_DIR_ENV: &str = "KEYPLANE_TOOLS_DIR";

/// Paths of the repository and of its project-local toolchain.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The workspace root (where `Cargo.toml`, `wrangler.toml` and `.ci/` are).
    pub root: PathBuf,
    /// The toolchain folder, `.tools/` unless overridden.
    pub dir: PathBuf,
}

impl Tools {
    /// Finds the workspace root (the parent of this crate) and the toolchain folder.
    pub fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives one level below the workspace root")?
            .to_path_buf();
        let dir = match std::env::var_os(TOOLS_DIR_ENV) {
            Some(dir) if !dir.is_empty() => std::path::absolute(PathBuf::from(dir))
                .with_context(|| format!("resolving ${TOOLS_DIR_ENV}"))?,
            _ => root.join(".tools"),
        };
        Ok(Self { root, dir })
    }

    /// `--root` for `cargo install`.
    pub fn cargo_root(&self) -> PathBuf {
        self.dir.join("cargo")
    }

    /// Where `cargo install --root` puts binaries.
    pub fn cargo_bin_dir(&self) -> PathBuf {
        self.cargo_root().join("bin")
    }

    /// A binary installed with `cargo install --root`.
    pub fn cargo_bin(&self, name: &str) -> PathBuf {
        self.cargo_bin_dir().join(name)
    }

    /// The npm project the node tools are installed in.
    pub fn node_dir(&self) -> PathBuf {
        self.dir.join("node")
    }

    /// Its `node_modules`.
    pub fn node_modules(&self) -> PathBuf {
        self.node_dir().join("node_modules")
    }

    /// Its `node_modules/.bin` (node 22 itself, wrangler, wasm-opt, esbuild).
    pub fn node_bin_dir(&self) -> PathBuf {
        self.node_modules().join(".bin")
    }

    /// A binary from `node_modules/.bin`.
    pub fn node_bin(&self, name: &str) -> PathBuf {
        self.node_bin_dir().join(name)
    }

    /// The committed npm manifest and lock the node tools come from.
    pub fn node_manifest_dir(&self) -> PathBuf {
        self.root.join("xtask").join("node")
    }

    /// The Python virtual environment schemathesis is installed in.
    pub fn python_dir(&self) -> PathBuf {
        self.dir.join("python")
    }

    /// schemathesis's command line, `st`.
    pub fn schemathesis_bin(&self) -> PathBuf {
        self.python_dir().join("bin").join("st")
    }

    /// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// The edge worker's build output (what worker-build writes, what wrangler/miniflare run).
    pub fn edge_build_dir(&self) -> PathBuf {
        self.root.join("edge").join("build")
    }

    /// The `keyplane` binary of a debug build.
    pub fn keyplane_bin(&self) -> PathBuf {
        self.target_dir().join("debug").join("keyplane")
    }

    /// `PATH` with Node 22 first, then the cargo-installed tools, then the caller's `PATH`.
    pub fn search_path(&self) -> Result<OsString> {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let dirs = [self.node_bin_dir(), self.cargo_bin_dir()]
            .into_iter()
            .chain(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).context("building PATH")
    }

    /// The environment every tool runs under, as (name, value) pairs.
    pub fn env(&self) -> Result<Vec<(&'static str, OsString)>> {
        Ok(vec![
            ("PATH", self.search_path()?),
            (
                "WASM_BINDGEN_BIN",
                self.cargo_bin("wasm-bindgen").into_os_string(),
            ),
            ("WASM_OPT_BIN", self.node_bin("wasm-opt").into_os_string()),
            ("ESBUILD_BIN", self.node_bin("esbuild").into_os_string()),
            ("WRANGLER_SEND_METRICS", OsString::from("false")),
            // miniflare otherwise fetches workers.cloudflare.com/cf.json on every start.
            ("CLOUDFLARE_CF_FETCH_ENABLED", OsString::from("false")),
            ("KEYPLANE_NODE", self.node_bin("node").into_os_string()),
            (
                "KEYPLANE_NODE_MODULES",
                self.node_modules().into_os_string(),
            ),
            (
                "KEYPLANE_EDGE_BUILD",
                self.edge_build_dir().into_os_string(),
            ),
            ("KEYPLANE_BIN", self.keyplane_bin().into_os_string()),
            (
                "KEYPLANE_SCHEMATHESIS",
                self.schemathesis_bin().into_os_string(),
            ),
        ])
    }

    /// A command for `program` running in the workspace root under [`Tools::env`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        let mut command = Command::new(program);
        command.current_dir(&self.root).envs(self.env()?);
        Ok(command)
    }

    /// `cargo` (the one that launched us, when known) under [`Tools::env`].
    pub fn cargo(&self) -> Result<Command> {
        self.command(cargo_program())
    }
}

/// The cargo that runs xtask (`$CARGO`), else `cargo` from PATH.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// The version of `package` recorded in `Cargo.lock` (the first one, if several).
pub fn locked_version(cargo_lock: &str, package: &str) -> Result<String> {
    let wanted = format!("name = \"{package}\"");
    let mut lines = cargo_lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted
            && let Some(version) = lines
                .next()
                .and_then(|next| next.trim().strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'))
        {
            return Ok(version.to_owned());
        }
    }
    bail!("Cargo.lock has no package {package}")
}

#[cfg(test)]
mod tests {
    use super::locked_version;

    #[test]
    fn locked_version_reads_the_line_after_the_name() {
        let lock = "[[package]]\nname = \"wasm-bindgen-shared\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\nsource = \"x\"\n";
        assert_eq!(
            locked_version(lock, "wasm-bindgen").ok().as_deref(),
            Some("0.2.130")
        );
        assert!(locked_version(lock, "worker").is_err());
    }
}
