//! The `keyplane` binary as a client: commands that talk to a running control plane over its
//! REST API (never to the database), in the manner of `gh`, `stripe` and `kubectl`.
//!
//! - [`connection`]: `--url` / `KEYPLANE_URL`, the credential from `KEYPLANE_API_KEY` or
//!   `KEYPLANE_TOKEN` (never a flag), the HTTP calls and their retries.
//! - [`output`]: tables, `--json`, `--jsonl`, `--field`.
//! - [`failure`]: errors and the exit codes scripts branch on.
//! - [`keys`], [`rotate_due`], [`reports`]: the commands; [`pages`]: `--all` and cursors;
//!   [`values`]: flag values parsed at the boundary.
//!
//! The operator commands (`serve`, `bootstrap`, `edges`, `users add`, `edge-env`) stay local
//! to the data directory and the database, in `main.rs`.

pub mod connection;
pub mod failure;
pub mod keys;
pub mod output;
pub mod pages;
pub mod reports;
pub mod rotate_due;
pub mod values;

use clap::Subcommand;

use connection::{Connection, ConnectionArgs};
use failure::{CliError, Exit};
use output::{Mode, OutputArgs};

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Keys: create, list, get, update, rotate, revoke, delete, transfer, rotate-due.
    Keys {
        /// Connection and output.
        #[command(flatten)]
        client: ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// A key's requests as the edges reported them (`--daily`: per UTC day).
    Usage {
        /// Connection and output.
        #[command(flatten)]
        client: ClientArgs,
        /// Which key and requests.
        #[command(flatten)]
        args: reports::UsageArgs,
    },
    /// The organization's audit log: `list`, and `verify` its hash chain.
    Audit {
        /// Connection and output.
        #[command(flatten)]
        client: ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: reports::AuditCommand,
    },
    /// Who the credential is: method, key, user, organization, role, permissions.
    Whoami {
        /// Connection and output.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The connection and output flags, taken by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Where the control plane is.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs a client command; errors are printed to stderr and become the exit code.
pub async fn run(command: ClientCommand) -> Exit {
    match run_inner(command).await {
        Ok(()) => Exit::Ok,
        Err(error) => {
            if !is_closed_pipe(&error) {
                eprintln!("keyplane: {error}");
            }
            match error {
                // `keyplane keys list | head -1`: a reader that stopped is not a failure.
                ref closed if is_closed_pipe(closed) => Exit::Ok,
                other => other.exit(),
            }
        }
    }
}

fn is_closed_pipe(error: &CliError) -> bool {
    matches!(error, CliError::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn run_inner(command: ClientCommand) -> Result<(), CliError> {
    let (ClientCommand::Keys { client, .. }
    | ClientCommand::Usage { client, .. }
    | ClientCommand::Audit { client, .. }
    | ClientCommand::Whoami { client }) = &command;
    let mode = Mode::choose(&client.output)?;
    let connection = Connection::open(&client.connection)?;
    match command {
        ClientCommand::Keys { command, .. } => keys::run(&connection, &mode, command).await,
        ClientCommand::Usage { args, .. } => reports::usage(&connection, &mode, args).await,
        ClientCommand::Audit { command, .. } => reports::audit(&connection, &mode, command).await,
        ClientCommand::Whoami { .. } => reports::whoami(&connection, &mode).await,
    }
}
