//! The `keyplane` binary: `keyplane serve` runs the control plane.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Keyplane: issue, rotate, revoke and audit API keys, checked at the edge.
#[derive(Debug, Parser)]
#[command(name = "keyplane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane's HTTP API until Ctrl-C or SIGTERM.
    Serve(keyplane_control_plane::Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(config) => {
            // Before binding: a signal arriving right after start-up must shut down gracefully.
            let shutdown = keyplane_control_plane::shutdown_signal()?;
            keyplane_control_plane::run(config, shutdown).await
        }
    }
}
