//! `cargo xtask dev`: the control plane, the edge (`wrangler dev`) and a demo origin running
//! locally until Ctrl-C. The edge's secrets go to `.dev.vars` (mode 0600, git-ignored), read
//! from the control plane's data directory by `keyplane edge-env`.
//!
//! Once both answer, it says how to start: the admin key the control plane printed on a
//! first start (read from its stdout, which is passed through), or where to get a key after,
//! and three lines that try the CLI and the edge.
//!
//! Both run in their own process groups ([`Service`]): a Ctrl-C reaches only xtask, which
//! then stops the edge (wrangler, its node and workerd processes) and the control plane
//! (graceful shutdown on SIGTERM) as whole groups.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::run::{self, Service, announce};
use crate::setup;
use crate::test::edge_build;
use crate::tools::Tools;

/// Options of `cargo xtask dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the control plane listens.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// The port `wrangler dev` serves the edge on (127.0.0.1).
    #[arg(long, default_value_t = 8787)]
    edge_port: u16,
    /// Where the demo origin (an echo of what the edge forwarded) listens.
    #[arg(long, default_value = "127.0.0.1:7071")]
    origin: SocketAddr,
    /// wrangler's inspector port; default: a free one, so several instances can coexist.
    #[arg(long)]
    inspector_port: Option<u16>,
    /// Reuse the existing edge build and keyplane binary instead of rebuilding them.
    #[arg(long)]
    no_build: bool,
}

/// Builds, starts both services, and stops them on Ctrl-C (or when either one dies).
pub fn dev(tools: &Tools, args: &DevArgs) -> Result<()> {
    if !args.no_build {
        build(tools)?;
    }

    let (interrupted, interrupt) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = interrupted.send(());
    })
    .context("installing the Ctrl-C handler")?;

    announce("edge secrets (.dev.vars, from the control plane's data dir)");
    let data_dir = tools.root.join(".keyplane");
    let edge_env = run::probe(
        tools
            .command(tools.keyplane_bin())?
            .arg("edge-env")
            .arg("--data-dir")
            .arg(&data_dir),
    )
    .context("`keyplane edge-env` failed")?;
    write_private(&tools.root.join(".dev.vars"), &format!("{edge_env}\n"))?;

    announce("starting the demo origin, the control plane and the edge");
    let origin = keyplane_tests::Origin::start_on(&args.origin.to_string())?;
    let control_plane_url = format!("http://{}", args.listen);
    let mut control_plane = Service::spawn(
        "control plane",
        tools
            .command(tools.keyplane_bin())?
            .arg("serve")
            .arg("--listen")
            .arg(args.listen.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            // The edge listens on http://127.0.0.1 (and later: webhooks to local receivers).
            .env("KEYPLANE_LOCAL_DEV", "true")
            .stdout(Stdio::piped()),
    )?;
    let admin_key = control_plane
        .take_stdout()
        .map(pass_through_catching_admin_key);
    let inspector_port = match args.inspector_port {
        Some(port) => port,
        None => run::free_port()?,
    };
    let edge_url = format!("http://127.0.0.1:{}", args.edge_port);
    let mut edge = Service::spawn(
        "edge (wrangler dev)",
        tools
            .command(tools.node_bin("wrangler"))?
            .args(["dev", "--config", "wrangler.toml", "--ip", "127.0.0.1"])
            .args(["--port", &args.edge_port.to_string()])
            .args(["--inspector-port", &inspector_port.to_string()])
            .args(["--log-level", "warn"])
            .arg("--var")
            .arg(format!("CONTROL_PLANE_URL:{control_plane_url}"))
            .arg("--var")
            .arg(format!("ORIGIN_URL:{}", origin.url))
            .arg("--var")
            .arg(format!("EDGE_URL:{edge_url}"))
            // The control plane listens on http://127.0.0.1.
            .arg("--var")
            .arg("KEYPLANE_LOCAL_DEV:true"),
    )?;

    let first_key = wait_until_up(&control_plane_url, &edge_url, admin_key.as_ref())?;
    println!(
        "\n    dashboard      {control_plane_url}/ (on a first start, open the setup link keyplane printed)"
    );
    println!("    control plane  {control_plane_url}/healthz");
    println!("    edge           {edge_url}/__keyplane/health");
    println!(
        "    demo origin    {} (echoes what the edge forwards)",
        origin.url
    );
    println!("    inspector      127.0.0.1:{inspector_port}");
    println!();
    print!(
        "{}",
        how_to_start(&control_plane_url, &edge_url, first_key.as_deref())
    );
    println!("    Ctrl-C stops both.\n");

    let outcome = loop {
        match interrupt.recv_timeout(Duration::from_millis(250)) {
            Ok(()) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(failed) = first_exited(&mut [&mut control_plane, &mut edge])? {
            break Err(failed);
        }
    };
    announce("stopping");
    edge.stop(Duration::from_secs(5));
    control_plane.stop(Duration::from_secs(10));
    match outcome {
        Ok(()) => Ok(()),
        Err(message) => bail!(message),
    }
}

/// Echoes the control plane's stdout line by line (on a thread) and sends the admin key it
/// prints on a first start; the key is kept in memory only.
fn pass_through_catching_admin_key(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (found, admin_key) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if let Some(key) = admin_key_in(&line) {
                let _ = found.send(key.to_owned());
            }
        }
    });
    admin_key
}

/// The key in the control plane's "its admin key, shown once (store it now): KEY" line.
fn admin_key_in(line: &str) -> Option<&str> {
    let (_, key) = line.split_once("its admin key, shown once (store it now): ")?;
    Some(key.trim()).filter(|key| !key.is_empty())
}

/// Waits (up to two minutes) until the control plane and the edge answer their health checks;
/// the admin key if the control plane printed one (a first start).
fn wait_until_up(
    control_plane_url: &str,
    edge_url: &str,
    admin_key: Option<&mpsc::Receiver<String>>,
) -> Result<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let answers = |url: String| {
        keyplane_tests::get_with_timeout(&url, Duration::from_secs(2))
            .is_ok_and(|reply| reply.status == 200)
    };
    while !(answers(format!("{control_plane_url}/healthz"))
        && answers(format!("{edge_url}/__keyplane/health")))
    {
        if Instant::now() > deadline {
            bail!("the control plane and the edge did not both answer within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The key is printed before the control plane listens; a short wait covers the thread.
    Ok(admin_key.and_then(|key| key.recv_timeout(Duration::from_millis(200)).ok()))
}

/// The "how to start" lines: the first start's admin key, or where to find a key after, then
/// the CLI and the edge tried once.
fn how_to_start(control_plane_url: &str, edge_url: &str, admin_key: Option<&str>) -> String {
    let (intro, key) = match admin_key {
        Some(key) => (
            format!(
                "    admin key      {key}\n                   (shown this once: store it; it is kept nowhere in plaintext)\n"
            ),
            key.to_owned(),
        ),
        None => (
            format!(
                "    admin key      printed on the first start only. For a new one: dashboard > Keys > New key\n                   with api-keys:manage ({control_plane_url}/), or remove .keyplane to start over\n"
            ),
            "<key>".to_owned(),
        ),
    };
    format!(
        "{intro}    try it:\n      export KEYPLANE_URL={control_plane_url} KEYPLANE_API_KEY={key}\n      NEW=$(target/debug/keyplane keys create --name demo --environment live --field key)\n      curl -H \"x-api-key: $NEW\" {edge_url}/hello\n"
    )
}

/// Sets up the toolchain, then builds the edge worker and the keyplane binary.
pub fn build(tools: &Tools) -> Result<()> {
    setup::toolchain(tools)?;
    announce("edge worker build");
    run::run(&mut edge_build(tools)?)?;
    announce("keyplane binary");
    run::run(
        tools
            .cargo()?
            .args(["build", "-p", "keyplane-control-plane", "--bin", "keyplane"]),
    )
}

/// Writes `text` to `path`, readable by the owner only (it holds secrets).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn first_exited(services: &mut [&mut Service]) -> Result<Option<String>> {
    for service in services.iter_mut() {
        if let Some(status) = service.exited()? {
            return Ok(Some(format!(
                "{} exited on its own ({status})",
                service.name()
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_admin_key_in_the_first_start_line() {
        let line = "its admin key, shown once (store it now): kp_live_abc";
        assert_eq!(admin_key_in(line), Some("kp_live_abc"));
        assert_eq!(
            admin_key_in("keyplane listening on http://127.0.0.1:7070"),
            None
        );
    }

    #[test]
    fn says_how_to_start_with_the_first_key_or_where_to_find_one() {
        let first = how_to_start("http://cp", "http://edge", Some("kp_live_abc"));
        assert!(first.contains("admin key      kp_live_abc"), "{first}");
        assert!(
            first.contains("KEYPLANE_URL=http://cp KEYPLANE_API_KEY=kp_live_abc"),
            "{first}"
        );
        assert!(first.contains("keys create --name demo"), "{first}");
        assert!(first.contains("http://edge/hello"), "{first}");
        let later = how_to_start("http://cp", "http://edge", None);
        assert!(later.contains("dashboard > Keys > New key"), "{later}");
        assert!(later.contains("KEYPLANE_API_KEY=<key>"), "{later}");
    }
}
