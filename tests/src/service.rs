//! The processes a test starts: each leads its own process group (so workerd, the edge
//! harness's child, goes with it), prints its base URL when it is up, and is stopped with it
//! when dropped.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a service may take to print its URL.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub(crate) fn start(
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
    pub(crate) fn start_when_ready(
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
