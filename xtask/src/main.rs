//! Keyplane's task runner, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Layout:
//! - [`tools`]: where the project-local toolchain lives (`.tools/`) and the environment
//!   (PATH, `WASM_BINDGEN_BIN`, ...) every other command runs under.
//! - [`setup`]: installs that toolchain idempotently from crates.io and npm.
//! - [`browser`]: Chromium and `tests/browser`'s npm packages, for the dashboard's browser test.
//! - [`python`]: schemathesis in a virtual environment, for the API's conformance run.
//! - [`run`]: running steps and child processes (announcing them, process groups, stopping them).
//! - [`mod@test`]: the whole check suite that `.ci/run` runs.
//! - [`dev`]: the control plane and the edge running locally, stopped with Ctrl-C.
//! - [`extras`]: `fuzz` and `bench`.

mod browser;
mod dev;
mod extras;
mod python;
mod run;
mod setup;
mod test;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keyplane's developer tasks: set up the toolchain, run the tests, run it locally.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install everything the tests and dev loop need into `.tools/` (or $KEYPLANE_TOOLS_DIR).
    Setup,
    /// Run every check: fmt, clippy (native + wasm32), docs, tests (native + wasm32), edge build, end-to-end.
    Test(test::TestArgs),
    /// Build the edge worker (worker-build --release) and the keyplane binary.
    Build,
    /// Run the control plane (127.0.0.1:7070) and the edge under `wrangler dev` (127.0.0.1:8787).
    Dev(dev::DevArgs),
    /// Run the cargo-fuzz targets in shared/fuzz.
    Fuzz(extras::FuzzArgs),
    /// Run the hot-path criterion benchmark of keyplane-shared.
    Bench(extras::BenchArgs),
    /// Run the edge benchmarks: table scale in wasm, propagation (3 edges; 1 and 2 control planes), edge overhead, sustained load.
    BenchEdge,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tools::Tools::locate().and_then(|tools| match cli.command {
        Command::Setup => setup::setup(&tools),
        Command::Test(args) => test::test(&tools, &args),
        Command::Build => dev::build(&tools),
        Command::Dev(args) => dev::dev(&tools, &args),
        Command::Fuzz(args) => extras::fuzz(&tools, &args),
        Command::Bench(args) => extras::bench(&tools, &args),
        Command::BenchEdge => extras::bench_edge(&tools),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
