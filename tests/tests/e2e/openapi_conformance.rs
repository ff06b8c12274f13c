//! The management API against its own OpenAPI document: schemathesis (installed by `cargo xtask
//! setup` into `.tools/python`, see `xtask/python/requirements.txt`) generates requests from
//! `/openapi.json` and sends them to a control plane on SQLite, with the admin key. Every check
//! it has is on (`--checks all`): no 5xx; every status, content type, header and body as
//! documented; a request the document calls valid is not refused with 400, and one it calls
//! invalid is not accepted. Where a rule cannot be stated by a schema (a time that must be in
//! the future, a window of at most 366 days), `tests/schemathesis/schemathesis.toml` names the
//! operation and the rule, and leaves out only the check that rule defeats.
//!
//! After the run, the organization's audit chain still verifies and the admin key still works:
//! thousands of generated calls, most of them refused, leave nothing half-written.
//!
//! The examples are bounded (`KEYPLANE_ST_EXAMPLES`, default 40 per operation) and the seed is
//! fixed (`KEYPLANE_ST_SEED` to try another), so CI repeats the same run, in about 50 s.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use keyplane_tests::{Deployment, Setup, fresh_dir, required, workspace_root};
use serde_json::json;

/// Examples per operation and phase, unless `KEYPLANE_ST_EXAMPLES` says otherwise.
const EXAMPLES: &str = "40";
/// The run's seed, unless `KEYPLANE_ST_SEED` says otherwise.
const SEED: &str = "20261205";
/// Past this, the run is stopped and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// schemathesis's `st`, or `None` (after saying why) when it is missing and not required.
fn schemathesis() -> Result<Option<PathBuf>> {
    let st = std::env::var_os("KEYPLANE_SCHEMATHESIS")
        .filter(|value| !value.is_empty())
        .map_or_else(
            || workspace_root().join(".tools/python/bin/st"),
            PathBuf::from,
        );
    if st.exists() {
        return Ok(Some(st));
    }
    let why = format!(
        "schemathesis is not installed at {}: run `cargo xtask setup`",
        st.display()
    );
    if required() {
        bail!(why);
    }
    eprintln!("skipping: {why}");
    Ok(None)
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[test]
#[ignore = "needs the built keyplane binary and schemathesis: run `cargo xtask test`"]
fn the_api_answers_as_its_openapi_document_says() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let Some(st) = schemathesis()? else {
        return Ok(());
    };
    let d = Deployment::start(&setup, 0, |_| {})?;
    // The calls on one key or one endpoint act on these, never on the admin key.
    let (target_key, _) =
        d.create_key(json!({"name": "schemathesis target", "environment": "live"}))?;
    let webhook = d.api(
        "POST",
        "/v1/webhooks",
        Some(json!({"url": format!("{}/hooks", d.origin.url), "events": ["key.created"]})),
    )?;
    ensure!(webhook.status == 201, "creating a webhook: {webhook:?}");
    let webhook_id = webhook.json()?["webhook"]["id"]
        .as_str()
        .context("webhook id")?
        .to_owned();

    let seed = setting("KEYPLANE_ST_SEED", SEED);
    let examples = setting("KEYPLANE_ST_EXAMPLES", EXAMPLES);
    let config = workspace_root().join("tests/schemathesis/schemathesis.toml");
    let mut command = Command::new(&st);
    command
        // schemathesis keeps a cache in `.schemathesis/` of its working directory.
        .current_dir(fresh_dir("schemathesis")?)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", d.control_plane.url))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        // One worker: with two threads, CPython 3.11's `ast.parse` (which hypothesis calls to
        // describe its strategies) shares one recursion counter between them and now and then
        // fails the run with `SystemError: AST constructor recursion depth mismatch`
        // (python/cpython#106905), a crash of the tool, not a finding.
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .env("KEYPLANE_ST_ADMIN_KEY", &d.admin_key)
        .env("KEYPLANE_ST_TARGET_KEY_ID", &target_key)
        .env("KEYPLANE_ST_WEBHOOK_ID", &webhook_id)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (status, output) = run_bounded(&mut command, RUN_LIMIT)?;
    let took = started.elapsed();
    let summary = output
        .lines()
        .skip_while(|line| !line.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    if !status {
        bail!(
            "schemathesis found failures (seed {seed}, {examples} examples) in {took:.0?}:\n{output}"
        );
    }
    eprintln!("schemathesis, seed {seed}, {examples} examples, {took:.1?}:\n{summary}");
    ensure!(
        summary.contains("Tested:"),
        "no summary from schemathesis: did it run?\n{output}"
    );

    // Nothing the run did broke the audit chain or the caller's own credential.
    let verified = d.api("GET", "/v1/audit/verify", None)?;
    ensure!(verified.status == 200, "audit verify: {verified:?}");
    let report = verified.json()?;
    ensure!(
        report["valid"] == true,
        "the audit chain after the run: {report}"
    );
    ensure!(
        report["records"].as_u64() > Some(1),
        "the run recorded nothing: {report}"
    );
    Ok(())
}

/// Runs `command` to its end or `limit`, whichever comes first; whether it succeeded, and
/// what it printed (stdout, then stderr).
fn run_bounded(command: &mut Command, limit: Duration) -> Result<(bool, String)> {
    let mut child = command.spawn().context("starting schemathesis")?;
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let mut stderr = child.stderr.take().context("piped stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => Ok((status.success(), output)),
        None => bail!("schemathesis still running after {limit:?}:\n{output}"),
    }
}
