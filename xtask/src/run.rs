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

/// Tests counted from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
}

impl std::ops::AddAssign for TestCounts {
    fn add_assign(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

impl TestCounts {
    /// Reads `test result: ok. 12 passed; 0 failed; …` (native libtest and wasm-bindgen-test).
    pub fn from_line(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let count = |label: &str| -> Option<u64> {
            rest.split(';').find_map(|part| {
                part.trim()
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .strip_suffix(label)?
                    .trim()
                    .parse()
                    .ok()
            })
        };
        Some(TestCounts {
            passed: count("passed")?,
            failed: count("failed")?,
        })
    }
}

/// Like [`run`], but echoes stdout line by line and adds up the test counts it reports.
pub fn run_counting(command: &mut Command) -> Result<TestCounts> {
    use std::io::{BufRead as _, BufReader};
    println!("    $ {}", display(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", display(command)))?;
    let mut counts = TestCounts::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the command's output")?;
            println!("{line}");
            if let Some(found) = TestCounts::from_line(&line) {
                counts += found;
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", display(command)))?;
    if !status.success() {
        bail!("`{}` failed ({})", display(command), describe(status));
    }
    Ok(counts)
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

    /// The child's stdout, when it was spawned with `Stdio::piped()` (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
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

#[cfg(test)]
mod tests {
    use super::TestCounts;

    #[test]
    fn libtest_summaries_are_counted() {
        let native = "test result: ok. 69 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            TestCounts::from_line(native),
            Some(TestCounts {
                passed: 69,
                failed: 0
            })
        );
        let failed =
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(
            TestCounts::from_line(failed),
            Some(TestCounts {
                passed: 3,
                failed: 1
            })
        );
        let wasm =
            "test result: ok. 14 passed; 0 failed; 0 ignored; 0 filtered out; finished in 2.52s";
        assert_eq!(
            TestCounts::from_line(wasm),
            Some(TestCounts {
                passed: 14,
                failed: 0
            })
        );
        assert_eq!(TestCounts::from_line("running 3 tests"), None);
    }
}
