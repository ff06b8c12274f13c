//! Edge overhead benchmark: requests/s, latency and CPU per request through the Keyplane
//! worker (valid key, decision, forward with identity headers, rate-limit fields on the
//! answer), with usage reporting off and on, vs a plain pass-through worker, all under the
//! same workerd (miniflare) in front of the same origin, driven by the same closed-loop load
//! generator (N keep-alive connections, one thread each). A second baseline, a JS worker making
//! the same header edits with fixed values and no decision, separates what the edits cost by
//! themselves from what the Keyplane worker adds to them. A third Keyplane edge runs with
//! its freshness bound at 60 s (`REPLICA_FRESHNESS_MS`), so a copy of the table is almost never
//! refreshed: beside the default 100 ms, it shows what keeping every isolate's copy fresh costs.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench edge_overhead -- [rounds] [seconds] [connections]`,
//! defaults 10, 3, 8).
//!
//! This 2-core machine is shared by the generator, workerd and the origin, and its speed drifts
//! by ±10 % from one run to the next, so the targets are measured in rounds: each round runs
//! the targets for `seconds` each, back to back (the order rotating from round to round), and
//! yields its own ratios against the pass-through; the figures are the median ratio over the
//! rounds (with the lowest and highest). Beside throughput, each edge process's CPU time per
//! request (its workerd and node harness, from `/proc`) shows what the worker itself costs,
//! whatever the scheduler gave the generator.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_tests::{Deployment, EdgeOptions, EdgeWorker, Setup};
use serde_json::json;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

struct Run {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU seconds the edge's processes used during the run.
    cpu_secs: f64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_secs * 1e6 / self.requests.max(1) as f64
    }
}

struct Target {
    name: &'static str,
    url: String,
    key: Option<String>,
    process_group: u32,
    runs: Vec<Run>,
}

fn main() -> Result<()> {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let rounds = numbers.first().copied().unwrap_or(10).max(1) as usize;
    let seconds = numbers.get(1).copied().unwrap_or(3).max(1);
    let connections = numbers.get(2).copied().unwrap_or(8).max(1) as usize;
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    // edge-0 reports usage (the default), edge-1 and edge-2 do not; edge-2 refreshes its copy
    // of the table only every 60 s instead of keeping it within 100 ms.
    let deployment = Deployment::start(&setup, 3, |options| {
        if options.name != "edge-0" {
            options.var("USAGE_REPORTING", "off");
        }
        if options.name == "edge-2" {
            options.var("REPLICA_FRESHNESS_MS", "60000");
        }
    })?;
    let (_, key) = deployment.create_key(json!({"name": "bench", "environment": "live"}))?;
    for edge in 0..3 {
        deployment.wait_for(Duration::from_secs(10), "key reaching the edge", || {
            Ok(deployment.through_edge(edge, "/x", Some(&key))?.status == 200)
        })?;
    }
    let baseline = |name: &str, worker: EdgeWorker| {
        let mut options = EdgeOptions::new(name, "http://127.0.0.1:9", &deployment.origin.url);
        options.worker = worker;
        setup.start_edge_with(&options, &deployment.secrets)
    };
    let passthrough = baseline("passthrough", EdgeWorker::Passthrough)?;
    let with_edits = baseline("passthrough-edits", EdgeWorker::PassthroughWithEdits)?;

    let path = "/v1/contacts/42?expand=owner";
    let group = |index: usize| {
        deployment
            .edge_process_group(index)
            .context("the edge is not running")
    };
    let mut targets = [
        Target {
            name: "pass-through worker",
            url: format!("{}{path}", passthrough.url),
            key: None,
            process_group: passthrough.pid(),
            runs: Vec::new(),
        },
        Target {
            name: "JS, Keyplane's edits",
            url: format!("{}{path}", with_edits.url),
            key: Some(key.clone()),
            process_group: with_edits.pid(),
            runs: Vec::new(),
        },
        Target {
            name: "keyplane, usage off",
            url: format!("{}{path}", deployment.edge_url(1)),
            key: Some(key.clone()),
            process_group: group(1)?,
            runs: Vec::new(),
        },
        Target {
            name: "keyplane, usage on",
            url: format!("{}{path}", deployment.edge_url(0)),
            key: Some(key.clone()),
            process_group: group(0)?,
            runs: Vec::new(),
        },
        Target {
            name: "keyplane, off, 60 s fresh",
            url: format!("{}{path}", deployment.edge_url(2)),
            key: Some(key.clone()),
            process_group: group(2)?,
            runs: Vec::new(),
        },
    ];
    let duration = Duration::from_secs(seconds);
    // Warm each (JIT, connection pools) before measuring.
    for target in &targets {
        load(target, Duration::from_secs(2), connections)?;
    }
    for round in 0..rounds {
        for offset in 0..targets.len() {
            let index = (round + offset) % targets.len();
            let run = load(&targets[index], duration, connections)?;
            targets[index].runs.push(run);
        }
    }

    println!(
        "edge overhead, {connections} connections, {rounds} rounds of {seconds} s per target:"
    );
    for target in &mut targets {
        let runs = &mut target.runs;
        let requests: u64 = runs.iter().map(|run| run.requests).sum();
        let elapsed: f64 = runs.iter().map(|run| run.elapsed.as_secs_f64()).sum();
        let cpu: f64 = runs.iter().map(|run| run.cpu_secs).sum();
        let mut latencies: Vec<Duration> = runs
            .iter_mut()
            .flat_map(|run| run.latencies.drain(..))
            .collect();
        latencies.sort();
        println!(
            "  {:<22} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, edge CPU {:.0} µs/request",
            target.name,
            requests as f64 / elapsed,
            quantile_ms(&latencies, 0.5),
            quantile_ms(&latencies, 0.99),
            cpu * 1e6 / requests.max(1) as f64
        );
    }
    let [base, edits, off, on, lax] = &targets;
    let per_round = |a: &Target, b: &Target, figure: fn(&Run) -> f64| -> Vec<f64> {
        a.runs
            .iter()
            .zip(&b.runs)
            .map(|(a, b)| figure(a) / figure(b))
            .collect()
    };
    for (what, values) in [
        (
            "throughput, JS with Keyplane's edits / pass-through",
            per_round(edits, base, Run::rps),
        ),
        (
            "throughput, keyplane (usage off) / pass-through",
            per_round(off, base, Run::rps),
        ),
        (
            "throughput, keyplane (usage off) / JS with Keyplane's edits",
            per_round(off, edits, Run::rps),
        ),
        (
            "throughput, keyplane (usage on) / pass-through ",
            per_round(on, base, Run::rps),
        ),
        (
            "throughput, usage on / usage off               ",
            per_round(on, off, Run::rps),
        ),
        (
            "throughput, keyplane (usage off) / the same with 60 s freshness",
            per_round(off, lax, Run::rps),
        ),
        (
            "edge CPU per request, JS with Keyplane's edits / pass-through",
            per_round(edits, base, Run::cpu_us_per_request),
        ),
        (
            "edge CPU per request, keyplane (usage off) / pass-through",
            per_round(off, base, Run::cpu_us_per_request),
        ),
        (
            "edge CPU per request, keyplane (usage on) / pass-through ",
            per_round(on, base, Run::cpu_us_per_request),
        ),
        (
            "edge CPU per request, keyplane (usage off) / 60 s freshness",
            per_round(off, lax, Run::cpu_us_per_request),
        ),
    ] {
        let (median, low, high) = spread(values);
        println!("  ratio {what}: median {median:.3} (rounds {low:.3}–{high:.3})");
    }
    let status = deployment.edge_status(0)?;
    println!("  edge-0 usage reporting: {}", status["usage"]);
    drop((passthrough, with_edits));
    Ok(())
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
}

/// Median, lowest and highest of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// CPU seconds (user + system) used so far by every process in process group `group`.
fn group_cpu_secs(group: u32) -> Result<f64> {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name (in parentheses, possibly with spaces): state, ppid, pgrp, …
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field numbers of proc(5), counted from 1 at the pid: pgrp is 5, utime 14, stime 15.
        let field = |number: usize| fields.get(number - 3).and_then(|f| f.parse::<u64>().ok());
        if field(5) == Some(u64::from(group)) {
            ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
        }
    }
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

/// `connections` threads, each sending requests back to back on one keep-alive connection.
fn load(target: &Target, duration: Duration, connections: usize) -> Result<Run> {
    let (url, key) = (target.url.as_str(), target.key.as_deref());
    let cpu_before = group_cpu_secs(target.process_group)?;
    let start = Instant::now();
    let results: Vec<Result<(u64, Vec<Duration>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(move || -> Result<(u64, Vec<Duration>)> {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(10)))
                        .build()
                        .into();
                    let mut latencies = Vec::new();
                    while start.elapsed() < duration {
                        let sent = Instant::now();
                        let mut request = agent.get(url);
                        if let Some(key) = key {
                            request = request.header("x-api-key", key);
                        }
                        let mut response = request.call()?;
                        let _ = response.body_mut().read_to_vec()?;
                        if response.status() != 200 {
                            bail!("{url} answered {}", response.status());
                        }
                        latencies.push(sent.elapsed());
                    }
                    Ok((latencies.len() as u64, latencies))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("load thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu_secs = group_cpu_secs(target.process_group)? - cpu_before;
    let mut run = Run {
        requests: 0,
        elapsed,
        latencies: Vec::new(),
        cpu_secs,
    };
    for result in results {
        let (requests, latencies) = result?;
        run.requests += requests;
        run.latencies.extend(latencies);
    }
    Ok(run)
}
