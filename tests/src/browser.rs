//! The dashboard's browser tests: Chromium and the npm packages of `tests/browser`
//! (playwright-core, axe-core), found like the rest of [`Setup`], and a node script of that
//! folder run to completion with its output kept.
//!
//! | variable | what | default |
//! |---|---|---|
//! | `KEYPLANE_CHROMIUM` | the browser | `/usr/bin/chromium` (Debian's `chromium`) |
//!
//! `cargo xtask setup` installs both (Chromium with `apt-get`, the packages with `npm ci`).
//! When one is missing, [`BrowserTools::from_env`] skips or panics as [`Setup::from_env`] does.

use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{Setup, path_var, required, signal_group, workspace_root};

/// Where the browser and the browser scripts are.
#[derive(Debug, Clone)]
pub struct BrowserTools {
    chromium: PathBuf,
    dir: PathBuf,
}

/// What a script printed, stdout and stderr interleaved as they came, and how it ended.
#[derive(Debug)]
pub struct ScriptRun {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it printed.
    pub lines: Vec<String>,
}

impl ScriptRun {
    /// The whole output, one line after the other.
    pub fn output(&self) -> String {
        self.lines.join("\n")
    }
}

impl BrowserTools {
    /// Finds Chromium and `tests/browser/node_modules`; `None` (after printing why) when one is
    /// missing and the environment does not require end-to-end tests. Panics when it does.
    pub fn from_env() -> Option<Self> {
        let tools = Self {
            chromium: path_var("KEYPLANE_CHROMIUM", || PathBuf::from("/usr/bin/chromium")),
            dir: workspace_root().join("tests").join("browser"),
        };
        let modules = tools.dir.join("node_modules");
        let missing: Vec<String> = [
            ("Chromium (KEYPLANE_CHROMIUM)", tools.chromium.clone()),
            (
                "playwright-core",
                modules.join("playwright-core/package.json"),
            ),
            ("axe-core", modules.join("axe-core/axe.min.js")),
        ]
        .into_iter()
        .filter(|(_, path)| !path.exists())
        .map(|(what, path)| format!("{what} at {}", path.display()))
        .collect();
        if missing.is_empty() {
            return Some(tools);
        }
        let message = format!(
            "the browser test needs what `cargo xtask setup` installs; missing: {}",
            missing.join("; ")
        );
        if required() {
            panic!("{message}");
        }
        eprintln!("SKIPPED: {message}");
        None
    }

    /// Runs `node tests/browser/<script>` (Node 22 of `setup`) with `env` and `CHROMIUM`,
    /// echoing its lines as `[browser] …`; killed (its whole process group, browser included)
    /// when it has not finished within `timeout`.
    pub fn run_script(
        &self,
        setup: &Setup,
        script: &str,
        env: &[(&str, String)],
        timeout: Duration,
    ) -> Result<ScriptRun> {
        let mut command = Command::new(setup.node());
        command
            .arg(self.dir.join(script))
            .current_dir(&self.dir)
            .env("CHROMIUM", &self.chromium)
            .envs(env.iter().map(|(name, value)| (*name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("piped stdout")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        forward(stdout, sender.clone());
        forward(stderr, sender);
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut exited = None;
        loop {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    println!("[browser] {line}");
                    seen.push(line);
                    continue;
                }
                // Both pipes closed: the script is done.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Quiet for a moment: done if it exited (something it left behind may still hold
            // the pipes), killed if it ran out of time.
            if let Some(status) = child.try_wait().context("waiting for node")? {
                exited = Some(status);
                break;
            }
            if Instant::now() >= deadline {
                signal_group(child.id(), "KILL");
                let _ = child.wait();
                bail!(
                    "{script} did not finish within {timeout:?}; its output:\n{}",
                    seen.join("\n")
                );
            }
        }
        let status = match exited {
            Some(status) => status,
            None => child.wait().context("waiting for node")?,
        };
        // The last lines may still be on their way from the reader threads.
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            println!("[browser] {line}");
            seen.push(line);
        }
        // Whatever the script started and left running goes with it.
        signal_group(child.id(), "KILL");
        Ok(ScriptRun {
            status,
            lines: seen,
        })
    }
}

/// Sends each line read from `pipe` to `lines`, from a thread of its own.
fn forward(pipe: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}
