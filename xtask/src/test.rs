//! `cargo xtask test`: the whole check suite, in order, stopping at the first failure.
//!
//! fmt → clippy (native) → docs (every intra-doc link resolves) → clippy (wasm32, shared +
//! edge) → native tests → shared's wasm32 tests under node → `worker-build --release` → the
//! `keyplane` binary → end-to-end tests
//! (ignored in a plain `cargo test`, run here with `--ignored` and the env from [`Tools::env`];
//! among them the dashboard's browser test, whose Chromium and npm packages setup installs).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::run::{self, TestCounts, announce};
use crate::setup::{self, WASM_TARGET};
use crate::tools::Tools;

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip the wasm32 checks, the edge build and the end-to-end tests.
    #[arg(long)]
    quick: bool,
}

struct Step {
    title: &'static str,
    command: Command,
    /// Whether the step runs tests whose counts go into the closing summary.
    counts_tests: bool,
}

/// Runs setup, then every step.
pub fn test(tools: &Tools, args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    setup::setup(tools)?;
    let steps = steps(tools, args.quick)?;
    let total = steps.len();
    let mut counts = TestCounts::default();
    for (index, mut step) in steps.into_iter().enumerate() {
        announce(&format!("[{}/{total}] {}", index + 1, step.title));
        let step_started = Instant::now();
        let outcome = if step.counts_tests {
            run::run_counting(&mut step.command).map(|found| counts += found)
        } else {
            run::run(&mut step.command)
        };
        if let Err(error) = outcome {
            println!(
                "\nxtask test: FAILED at step {}/{total} ({}) after {}",
                index + 1,
                step.title,
                minutes(started.elapsed())
            );
            return Err(error);
        }
        println!("    ok ({})", minutes(step_started.elapsed()));
    }
    let skipped = if args.quick {
        " (--quick: wasm32, edge build and end-to-end skipped)"
    } else {
        ""
    };
    println!(
        "\nxtask test: all {total} steps passed in {}{skipped}",
        minutes(started.elapsed())
    );
    // The plain closing line CI reads: every test of every step, natively and on wasm32.
    println!(
        "summary: {} passed, {} failed",
        counts.passed, counts.failed
    );
    Ok(())
}

fn steps(tools: &Tools, quick: bool) -> Result<Vec<Step>> {
    let cargo = |args: &[&str]| -> Result<Command> {
        let mut command = tools.cargo()?;
        command.args(args);
        Ok(command)
    };
    let mut steps = vec![
        Step {
            title: "formatting (cargo fmt --check)",
            counts_tests: false,
            command: cargo(&["fmt", "--all", "--", "--check"])?,
        },
        Step {
            title: "clippy, native",
            counts_tests: false,
            command: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?,
        },
    ];
    // Every intra-doc link must resolve: a module header's link to a moved item fails here.
    let mut docs = cargo(&["doc", "--workspace", "--no-deps"])?;
    docs.env("RUSTDOCFLAGS", "-D warnings");
    steps.push(Step {
        title: "docs (cargo doc, warnings denied)",
        counts_tests: false,
        command: docs,
    });
    if !quick {
        steps.push(Step {
            title: "clippy, wasm32 (shared + edge)",
            counts_tests: false,
            command: cargo(&[
                "clippy",
                "-p",
                "keyplane-shared",
                "-p",
                "keyplane-edge",
                "--target",
                WASM_TARGET,
                "--lib",
                "--tests",
                "--",
                "-D",
                "warnings",
            ])?,
        });
    }
    steps.push(Step {
        title: "tests, native",
        counts_tests: true,
        command: cargo(&["test", "--workspace"])?,
    });
    if quick {
        return Ok(steps);
    }
    let runner = tools.cargo_bin("wasm-bindgen-test-runner");
    if !runner.exists() {
        bail!(
            "{} is missing; setup should have installed it",
            runner.display()
        );
    }
    let mut wasm_tests = cargo(&["test", "-p", "keyplane-shared", "--target", WASM_TARGET])?;
    wasm_tests.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", runner);
    steps.push(Step {
        title: "tests, wasm32 (shared, under node)",
        counts_tests: true,
        command: wasm_tests,
    });
    steps.push(Step {
        title: "edge worker build (worker-build --release)",
        counts_tests: false,
        command: edge_build(tools)?,
    });
    steps.push(Step {
        title: "keyplane binary (for the end-to-end tests)",
        counts_tests: false,
        command: cargo(&["build", "-p", "keyplane-control-plane", "--bin", "keyplane"])?,
    });
    let mut e2e = cargo(&["test", "-p", "keyplane-tests", "--", "--ignored"])?;
    // The e2e tests must not silently skip when run from here.
    e2e.env("KEYPLANE_E2E_REQUIRED", "1");
    steps.push(Step {
        title: "end-to-end (control plane binary + worker under workerd, dashboard in Chromium)",
        counts_tests: true,
        command: e2e,
    });
    Ok(steps)
}

/// `worker-build --release` in `edge/`, with the tools it would otherwise download and
/// Keyplane's own entry module (`edge/js/shim.mjs`: handlers called directly, without the
/// default entry's per-call panic-recovery proxies). Output: `edge/build/index.js`,
/// `edge/build/worker/{shim.mjs,index.wasm}`.
pub fn edge_build(tools: &Tools) -> Result<Command> {
    let mut command = tools.command(tools.cargo_bin("worker-build"))?;
    command
        .arg("--release")
        .current_dir(tools.root.join("edge"))
        .env("CUSTOM_SHIM", tools.root.join("edge/js/shim.mjs"))
        // RUST_BACKTRACE=1 (set on the machine image) makes worker-build's errors pages long.
        .env("RUST_BACKTRACE", "0");
    Ok(command)
}

fn minutes(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", elapsed.as_secs_f64())
    }
}
