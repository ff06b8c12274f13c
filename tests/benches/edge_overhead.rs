//! Edge overhead benchmark: requests/s and latency through the Keyplane worker (valid key,
//! decision, forward with identity headers), with usage reporting off and on, vs a plain
//! pass-through worker, all under the same workerd (miniflare) in front of the same origin,
//! driven by the same closed-loop load generator (N keep-alive connections, one thread each).
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench edge_overhead -- [seconds] [connections]`).
//! The three are measured in turn (A B C A B C) and each figure is the sum over its runs, so
//! drift on the machine hits all of them. On a 2-core machine the generator, workerd and the origin
//! share the cores: compare the ratio, not the absolute numbers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_tests::{Deployment, EdgeOptions, Setup};
use serde_json::json;

struct Run {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn main() -> Result<()> {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let seconds = numbers.first().copied().unwrap_or(10);
    let connections = numbers.get(1).copied().unwrap_or(8) as usize;
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    // edge-0 reports usage (the default), edge-1 does not.
    let deployment = Deployment::start(&setup, 2, |options| {
        if options.name == "edge-1" {
            options.var("USAGE_REPORTING", "off");
        }
    })?;
    let (_, key) = deployment.create_key(json!({"name": "bench", "environment": "live"}))?;
    for edge in 0..2 {
        deployment.wait_for(Duration::from_secs(10), "key reaching the edge", || {
            Ok(deployment.through_edge(edge, "/x", Some(&key))?.status == 200)
        })?;
    }
    let mut passthrough_options =
        EdgeOptions::new("passthrough", "http://127.0.0.1:9", &deployment.origin.url);
    passthrough_options.passthrough = true;
    let passthrough = setup.start_edge_with(&passthrough_options, &deployment.secrets)?;

    let path = "/v1/contacts/42?expand=owner";
    let targets = [
        (
            "pass-through worker",
            format!("{}{path}", passthrough.url),
            None,
        ),
        (
            "keyplane, usage off",
            format!("{}{path}", deployment.edge_url(1)),
            Some(key.as_str()),
        ),
        (
            "keyplane, usage on",
            format!("{}{path}", deployment.edge_url(0)),
            Some(key.as_str()),
        ),
    ];
    let duration = Duration::from_secs(seconds);
    // Warm each (JIT, connection pools) before measuring.
    for (_, url, key) in &targets {
        load(url, *key, Duration::from_secs(2), connections)?;
    }
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..2 {
        for ((_, url, key), runs) in targets.iter().zip(&mut runs) {
            runs.push(load(url, *key, duration, connections)?);
        }
    }
    let figures: Vec<(f64, f64, f64)> = runs.iter_mut().map(|runs| summary(runs)).collect();
    println!("edge overhead, {connections} connections, 2 × {seconds} s each, alternating:");
    for ((name, _, _), (rps, p50, p99)) in targets.iter().zip(&figures) {
        println!("  {name:<22} {rps:>7.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
    let (base, off, on) = (figures[0], figures[1], figures[2]);
    println!(
        "  ratio keyplane (usage off) / pass-through: throughput {:.3}, p50 latency {:.3}, p99 latency {:.3}",
        off.0 / base.0,
        off.1 / base.1,
        off.2 / base.2
    );
    println!(
        "  ratio keyplane (usage on) / pass-through:  throughput {:.3}, p50 latency {:.3}, p99 latency {:.3}",
        on.0 / base.0,
        on.1 / base.1,
        on.2 / base.2
    );
    println!(
        "  ratio usage on / usage off: throughput {:.3}",
        on.0 / off.0
    );
    let status = deployment.edge_status(0)?;
    println!("  edge-0 usage reporting: {}", status["usage"]);
    drop(passthrough);
    Ok(())
}

fn summary(runs: &mut [Run]) -> (f64, f64, f64) {
    let requests: u64 = runs.iter().map(|run| run.requests).sum();
    let elapsed: f64 = runs.iter().map(|run| run.elapsed.as_secs_f64()).sum();
    let mut latencies: Vec<Duration> = runs
        .iter_mut()
        .flat_map(|run| run.latencies.drain(..))
        .collect();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
    };
    (requests as f64 / elapsed, at(0.5), at(0.99))
}

/// `connections` threads, each sending requests back to back on one keep-alive connection.
fn load(url: &str, key: Option<&str>, duration: Duration, connections: usize) -> Result<Run> {
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
    let mut run = Run {
        requests: 0,
        elapsed,
        latencies: Vec::new(),
    };
    for result in results {
        let (requests, latencies) = result?;
        run.requests += requests;
        run.latencies.extend(latencies);
    }
    Ok(run)
}
