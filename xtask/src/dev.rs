//! `cargo xtask dev`: the control plane, the edge (`wrangler dev`) and a demo origin running
//! locally until Ctrl-C. The edge's secrets go to `.dev.vars` (mode 0600, git-ignored), read
//! from the control plane's data directory by `keyplane edge-env`.
//!
//! Both run in their own process groups ([`Service`]): a Ctrl-C reaches only xtask, which
//! then stops the edge (wrangler, its node and workerd processes) and the control plane
//! (graceful shutdown on SIGTERM) as whole groups.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

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
            .env("KEYPLANE_LOCAL_DEV", "true"),
    )?;
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

    println!(
        "\n    dashboard      {control_plane_url}/ (on a first start, open the setup link keyplane prints)"
    );
    println!("    control plane  {control_plane_url}/healthz");
    println!("    edge           {edge_url}/__keyplane/health");
    println!(
        "    demo origin    {} (echoes what the edge forwards)",
        origin.url
    );
    println!("    try:           curl -H \"x-api-key: <key>\" {edge_url}/hello");
    println!("    inspector      127.0.0.1:{inspector_port}");
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

/// Sets up the tools, then builds the edge worker and the keyplane binary.
pub fn build(tools: &Tools) -> Result<()> {
    setup::setup(tools)?;
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
