//! The `keyplane` binary. Operator commands, local to the data directory and the database:
//! `serve` runs the control plane; `bootstrap` creates an organization; `users add` prints an
//! owner's setup link; `edge-env` and `edges` configure edges. Client commands, which talk to a
//! running control plane over its REST API ([`keyplane_control_plane::cli`]): `keys`, `usage`,
//! `audit`, `whoami`.
//!
//! Exit codes: 0 ok, 1 usage error (clap's own included), and for the client commands 2 not
//! found, 3 refused, 4 conflict, 5 rate limited, 6 server or network error, 7 a failed check.

use std::sync::Arc;

use anyhow::Context as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use keyplane_control_plane::input::time::rfc3339;
use keyplane_control_plane::replication::registry::{self, EdgeSpec};
use keyplane_control_plane::state::SystemClock;
use keyplane_control_plane::{Application, Config, open_state};
use secrecy::{ExposeSecret as _, SecretString};
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
    /// Run the control plane's HTTP API (and push changes to the registered edges) until Ctrl-C
    /// or SIGTERM. On an empty database, first create an organization and print its admin key
    /// (once).
    Serve {
        #[command(flatten)]
        config: Config,
        /// Register an edge at start, `NAME=URL` (repeatable; the environment variable takes a
        /// comma-separated list). Pushes go to `<URL>/__keyplane/sync`.
        #[arg(
            long = "edge",
            env = "KEYPLANE_EDGES",
            value_delimiter = ',',
            value_name = "NAME=URL"
        )]
        edges: Vec<EdgeSpec>,
    },
    /// Create an organization and print its first admin key (once).
    Bootstrap {
        #[command(flatten)]
        config: Config,
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
    /// Print the two secrets an edge needs (`KEYPLANE_PEPPERS`, `KEYPLANE_EDGE_SECRET`) in
    /// `.dev.vars` form, for `wrangler secret put` or local runs.
    EdgeEnv {
        #[command(flatten)]
        config: Config,
    },
    /// The edge registry the pusher sends changes to.
    Edges {
        #[command(subcommand)]
        command: EdgesCommand,
    },
    /// People.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    #[command(flatten)]
    Client(keyplane_control_plane::cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Print a one-time link (valid 7 days) that makes someone an owner of an organization
    /// (default: the first one); they choose their password when they open it.
    Add {
        #[command(flatten)]
        config: Config,
        /// Their email.
        #[arg(long)]
        email: String,
        /// The organization (`org_…`); default: the first one.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum EdgesCommand {
    /// Register an edge (edges also register themselves when they pull with EDGE_URL set).
    Add {
        #[command(flatten)]
        config: Config,
        /// Its name (`EDGE_NAME`).
        name: String,
        /// Its base URL; pushes go to `<url>/__keyplane/sync`.
        url: String,
    },
    /// List registered edges and how far each has acknowledged the feed.
    List {
        #[command(flatten)]
        config: Config,
    },
    /// Stop pushing to an edge.
    Remove {
        #[command(flatten)]
        config: Config,
        /// Its name.
        name: String,
    },
}

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name).ok().map(SecretString::from)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Help and version are answers; every other parse failure is a usage error (1, where
            // clap would exit 2, the code of "not found" here).
            return if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
    };
    let client = matches!(cli.command, Command::Client(_));
    // Client commands keep stderr for their own messages; the server logs at info.
    let default_filter = if client { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Client(command) => keyplane_control_plane::cli::run(command).await.into(),
        operator => match operate(operator).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error:?}");
                ExitCode::from(1)
            }
        },
    }
}

/// Runs an operator command.
async fn operate(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Client(_) => Ok(()),
        Command::Serve { config, edges } => {
            // Before binding: a signal arriving right after start-up must shut down gracefully.
            let shutdown = keyplane_control_plane::shutdown_signal()?;
            let (application, bootstrapped) = Application::build(&config).await?;
            application.register_edges(&edges).await?;
            if let Some(first) = bootstrapped {
                print_admin_key(&first.org, &first.admin_key);
                println!(
                    "the first owner's setup link, one use, valid 7 days: {}",
                    first.setup_link
                );
            }
            let addr = application.local_addr()?;
            println!("keyplane listening on http://{addr}");
            tracing::info!(%addr, data_dir = %config.data_dir.display(), "control plane started");
            application.serve(shutdown).await
        }
        Command::Bootstrap { config, name } => {
            let state = open_state(&config, Arc::new(SystemClock), env_secret).await?;
            let (org, key) = keyplane_control_plane::bootstrap::create_organization(&state, &name)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            print_admin_key(&org, &key);
            Ok(())
        }
        Command::Users {
            command: UsersCommand::Add { config, email, org },
        } => {
            let state = open_state(&config, Arc::new(SystemClock), env_secret).await?;
            let org = match org {
                Some(text) => text
                    .parse()
                    .map_err(|error| anyhow::anyhow!("--org: {error}"))?,
                None => state
                    .operator_org()
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?
                    .ok_or_else(|| {
                        anyhow::anyhow!("no organization yet: run `keyplane serve` once")
                    })?,
            };
            let email = keyplane_control_plane::people::email(&email)
                .map_err(|error| anyhow::anyhow!("--email: {error}"))?;
            let link =
                keyplane_control_plane::bootstrap::owner_setup_link(&state, org, Some(email))
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
            println!("owner setup link for {org}, one use, valid 7 days: {link}");
            Ok(())
        }
        Command::EdgeEnv { config } => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            let (secrets, _) = keyplane_control_plane::secrets::load(&config.data_dir, env_secret)?;
            println!("KEYPLANE_PEPPERS={}", secrets.peppers_text.expose_secret());
            println!(
                "KEYPLANE_EDGE_SECRET={}",
                secrets.edge_secret_text.expose_secret()
            );
            Ok(())
        }
        Command::Edges { command } => edges(command).await,
    }
}

async fn edges(command: EdgesCommand) -> anyhow::Result<()> {
    let (EdgesCommand::Add { config, .. }
    | EdgesCommand::List { config }
    | EdgesCommand::Remove { config, .. }) = &command;
    let state = open_state(config, Arc::new(SystemClock), env_secret).await?;
    let store = &state.store;
    match &command {
        EdgesCommand::Add { name, url, .. } => {
            registry::validate(name, url, config.local_dev)?;
            store.register_edge(name, url, None, state.now()).await?;
            println!("registered edge {name} at {url}");
        }
        EdgesCommand::List { .. } => {
            let head = store.feed_head().await?;
            println!("feed head: {head}");
            println!("feed history: {}", store.feed_history());
            // `acked`: by a push; `pulled`: the sequence the edge reported when it last pulled.
            println!("name\turl\tacked\tpulled\tbehind\tlast seen\tlast error");
            for edge in store.edges().await? {
                let conflict = edge
                    .conflict_url
                    .as_deref()
                    .map_or_else(String::new, |url| {
                        format!(
                            " (refused: a pull named this edge from {url} at {}; \
                         `keyplane edges add` moves it)",
                            edge.conflict_at.map_or_else(|| "?".to_owned(), rfc3339)
                        )
                    });
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}{conflict}",
                    edge.name,
                    edge.url,
                    edge.acked_seq,
                    edge.reported_seq,
                    head.saturating_sub(edge.acked_seq.max(edge.reported_seq)),
                    edge.last_seen_at
                        .map_or_else(|| "never".to_owned(), rfc3339),
                    edge.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        EdgesCommand::Remove { name, .. } => {
            if !store.remove_edge(name).await? {
                anyhow::bail!("no edge named {name}");
            }
            println!("removed edge {name}");
        }
    }
    Ok(())
}

/// Prints a new organization's admin key to stdout, the one time it can be seen.
fn print_admin_key(org: &keyplane_control_plane::store::OrgRecord, key: &keyplane_shared::ApiKey) {
    println!("created organization {} ({})", org.name, org.id);
    println!(
        "its admin key, shown once (store it now): {}",
        key.expose_secret()
    );
}
