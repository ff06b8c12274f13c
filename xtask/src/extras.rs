//! `cargo xtask fuzz` and `cargo xtask bench`.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::run::{self, announce, probe};
use crate::setup;
use crate::tools::Tools;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// One fuzz target (see `cargo fuzz list` in shared/fuzz); default: every target in turn.
    #[arg(long)]
    target: Option<String>,
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Extra arguments for criterion, e.g. a benchmark name filter or `--save-baseline main`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    criterion_args: Vec<String>,
}

/// Runs each fuzz target for `--seconds` with cargo-fuzz on stable (`RUSTC_BOOTSTRAP=1`).
pub fn fuzz(tools: &Tools, args: &FuzzArgs) -> Result<()> {
    let fuzz_dir = tools.root.join("shared").join("fuzz");
    if !fuzz_dir.join("Cargo.toml").exists() {
        bail!(
            "{} has no Cargo.toml: no fuzz crate yet",
            fuzz_dir.display()
        );
    }
    announce("cargo-fuzz");
    if tools.cargo_bin("cargo-fuzz").exists() {
        println!("    present, skipping");
    } else {
        setup::cargo_install(tools, &["cargo-fuzz", "--locked"])?;
    }
    let cargo_fuzz = |args: &[&str]| -> Result<Command> {
        let mut command = tools.cargo()?;
        command
            .arg("fuzz")
            .args(args)
            .current_dir(&fuzz_dir)
            // Sanitizer builds stay in shared/fuzz/target, apart from the workspace's builds.
            .env_remove("CARGO_TARGET_DIR")
            // cargo-fuzz needs nightly flags (-Zsanitizer); this lets the stable toolchain accept them.
            .env("RUSTC_BOOTSTRAP", "1");
        Ok(command)
    };
    let targets = match &args.target {
        Some(target) => vec![target.clone()],
        None => probe(&mut cargo_fuzz(&["list"])?)
            .context("`cargo fuzz list` failed in shared/fuzz")?
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if targets.is_empty() {
        bail!("shared/fuzz has no fuzz targets");
    }
    let max_time = format!("-max_total_time={}", args.seconds);
    for target in &targets {
        announce(&format!("fuzz {target} for {} s", args.seconds));
        run::run(&mut cargo_fuzz(&["run", target, "--", &max_time])?)?;
    }
    println!(
        "\nxtask fuzz: {} target(s) ran {} s each without a crash",
        targets.len(),
        args.seconds
    );
    Ok(())
}

/// `cargo bench -p keyplane-shared --bench hot_path [-- <criterion args>]`.
pub fn bench(tools: &Tools, args: &BenchArgs) -> Result<()> {
    announce("hot-path benchmark (criterion)");
    let mut command = tools.cargo()?;
    command.args(["bench", "-p", "keyplane-shared", "--bench", "hot_path"]);
    if !args.criterion_args.is_empty() {
        command.arg("--").args(&args.criterion_args);
    }
    run::run(&mut command)?;
    print_ratios(tools)
}

/// The edge benchmarks, each printing its own figures: the key table in wasm32 under node
/// (100k and 1M keys), revocation propagation to 3 edges under workerd (one control plane on
/// SQLite, then two on PostgreSQL), throughput through the Keyplane worker (usage reporting
/// off and on) against a pass-through worker, rate-limit accuracy over 3 edges, a 60 s
/// sustained load with revocations during it, and a fresh isolate's first request with 100k
/// and 1M keys.
pub fn bench_edge(tools: &Tools) -> Result<()> {
    crate::dev::build(tools)?;
    announce("table scale in wasm32 (node)");
    let mut wasm = tools.cargo()?;
    wasm.args([
        "test",
        "--release",
        "-p",
        "keyplane-shared",
        "--target",
        "wasm32-unknown-unknown",
        "--test",
        "wasm_table_scale",
        "--",
        "--include-ignored",
        "--nocapture",
    ])
    .env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
        tools.cargo_bin("wasm-bindgen-test-runner"),
    );
    run::run(&mut wasm)?;
    // (what it measures, the benchmark in keyplane-tests, its arguments)
    let benches: [(&str, &str, &[&str]); 6] = [
        (
            "propagation: revoke -> 401 at 3 edges, 100 revocations",
            "propagation",
            &["100"],
        ),
        (
            "propagation: the same with two control-plane instances on PostgreSQL",
            "propagation",
            &["100", "--instances", "2"],
        ),
        (
            "edge overhead: keyplane worker vs pass-through worker",
            "edge_overhead",
            &["10", "3", "8"],
        ),
        (
            "rate-limit accuracy: a burst over 3 edges, isolate and global mode",
            "rate_limit_accuracy",
            &[],
        ),
        (
            "sustained load: 60 s at full rate with revocations, vs a pass-through worker",
            "sustained_load",
            &["60", "8", "100"],
        ),
        (
            "cold start: a fresh isolate's first request with 100k and 1M keys",
            "cold_isolate",
            &[],
        ),
    ];
    for (title, bench, args) in benches {
        announce(title);
        let mut command = tools.cargo()?;
        command
            .args(["bench", "-p", "keyplane-tests", "--bench", bench, "--"])
            .args(args);
        run::run(&mut command)?;
    }
    Ok(())
}

/// The benchmark that every hot-path figure is divided by: one bare HMAC-SHA256 of a key.
const FLOOR: &str = "floor_hmac_sha256";

/// Prints each hot-path median next to its ratio to the floor measured in the same run.
fn print_ratios(tools: &Tools) -> Result<()> {
    let group = tools.target_dir().join("criterion").join("hot_path");
    let median = |bench: &str| -> Result<f64> {
        let path = group.join(bench).join("new").join("estimates.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        json["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{} has no median", path.display()))
    };
    let floor = median(FLOOR)?;
    let mut benches: Vec<String> = std::fs::read_dir(&group)
        .with_context(|| format!("listing {}", group.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("new").join("estimates.json").exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    benches.sort();
    println!("\n| benchmark | median | × floor |\n|---|---:|---:|");
    for bench in &benches {
        let value = median(bench)?;
        println!("| `{bench}` | {value:.0} ns | {:.2} |", value / floor);
    }
    let (lookup, resident, miss) = (
        median("lookup_1m")?,
        median("lookup_1m_cache_resident")?,
        median("memory_miss")?,
    );
    let (chained, resident_chained) = (
        median("lookup_1m_chained")?,
        median("lookup_1m_cache_resident_chained")?,
    );
    println!(
        "\nlookup_1m ÷ (lookup_1m_cache_resident + memory_miss) = {:.2} (target ≤ 1.3)\n\
         lookup_1m_chained ÷ (lookup_1m_cache_resident_chained + memory_miss) = {:.2} \
         (target ≤ 1.3; a lookup's latency)\n\
         parse_digest_lookup_1m ÷ floor = {:.2} (target ≤ 2)",
        lookup / (resident + miss),
        chained / (resident_chained + miss),
        median("parse_digest_lookup_1m")? / floor
    );
    Ok(())
}
