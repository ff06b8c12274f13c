//! The `keyplane` client commands run as a script would: against a [`TestApp`] served on a
//! socket, with nothing of the caller's environment but what the test gives.

use std::process::Stdio;

use keyplane_control_plane::store::sql::Backend;
use serde_json::Value;
use tokio::process::Command;

use super::{TestApp, default_config, spawn_app_with};

/// A control plane serving on 127.0.0.1 (SQLite), and the test's handle on it.
pub struct Served {
    /// The application (router, clock, store) behind the socket.
    pub app: TestApp,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What one run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Run {
    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }

    /// stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}: {self:?}")))
            .collect()
    }

    /// stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts exit code 0.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// Serves a fresh SQLite control plane.
pub async fn serve() -> Served {
    let mut app = spawn_app_with(Backend::Sqlite, default_config)
        .await
        .expect("SQLite is always available");
    let application = app.application.take().expect("not yet serving");
    let url = format!("http://{}", application.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    Served {
        app,
        url,
        stop: Some(stop),
    }
}

/// The binary with an empty environment but `variables`.
pub fn keyplane_command(args: &[&str], variables: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyplane"));
    command
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(variables.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the binary to completion.
pub async fn run_with(args: &[&str], variables: &[(&str, &str)]) -> Run {
    let output = keyplane_command(args, variables)
        .output()
        .await
        .expect("keyplane runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Served {
    /// Runs a client command with `KEYPLANE_URL` and `KEYPLANE_API_KEY` set to this server and
    /// `key`; asserts the key never reaches stderr.
    pub async fn run_as(&self, key: &str, args: &[&str]) -> Run {
        let run = run_with(
            args,
            &[("KEYPLANE_URL", &self.url), ("KEYPLANE_API_KEY", key)],
        )
        .await;
        assert!(
            !run.stderr.contains(key),
            "the credential on stderr: {run:?}"
        );
        run
    }

    /// Runs a client command with the admin key.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_as(&self.app.admin_key.clone(), args).await
    }

    /// Runs `script` in `bash`, with the admin key, `$KEYPLANE` naming the binary: for a
    /// command whose output goes into a pipe.
    pub async fn pipeline(&self, script: &str) -> std::process::Output {
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("KEYPLANE", env!("CARGO_BIN_EXE_keyplane"))
            .env("KEYPLANE_URL", &self.url)
            .env("KEYPLANE_API_KEY", &self.app.admin_key)
            .output()
            .await
            .expect("bash")
    }
}
