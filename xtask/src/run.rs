//! Running things: announced steps that must succeed, quiet probes, and long-running
//! services in their own process groups that can be stopped as a whole.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// Prints a step's title the same way everywhere.
pub fn announce(title: &str) {
    println!("\n==> {title}");
}

/// The command line as a user would type it.
pub fn display(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    match command.get_current_dir() {
        Some(dir) => format!("(cd {} && {line})", dir.display()),
        None => line,
    }
}

/// Runs `command` with inherited stdio and fails unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    println!("    $ {}", display(command));
    let status = command
        .status()
        .with_context(|| format!("starting `{}`", display(command)))?;
    if !status.success() {
        bail!("`{}` failed ({})", display(command), describe(status));
    }
    Ok(())
}

/// Runs `command` silently and returns its trimmed stdout if it ran and succeeded.
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

/// A child process leading its own process group, so stopping it also stops whatever
/// it spawned (wrangler's node and workerd processes) and a Ctrl-C in the terminal
/// reaches only xtask, which then stops the group in order.
pub struct Service {
    name: String,
    child: Child,
}

impl Service {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        println!("    $ {}", display(command));
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}: `{}`", display(command)))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The service's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))
    }

    /// Sends SIGTERM to the whole group, waits up to `grace`, then SIGKILLs the group.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone; still sweep up anything it left in its group.
            signal_group(self.child.id(), "KILL");
            return;
        }
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                signal_group(self.child.id(), "KILL");
                println!("    stopped {}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "    {} did not stop within {grace:?}; killing it",
            self.name
        );
        signal_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Signals process group `pgid` through kill(1), which keeps this crate free of `unsafe`.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}
