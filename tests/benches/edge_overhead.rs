//! Edge overhead benchmark: requests/s, latency and CPU per request through the Keyplane
//! worker (valid key, decision, forward with identity headers, rate-limit fields on the
//! answer), with usage reporting off and on, vs a plain pass-through worker, all under the
//! same workerd (miniflare) in front of the same origin, driven by the same closed-loop load
//! generator (N keep-alive connections, one thread each).
//!
//! Beside them run JS workers making the same header edits with fixed values and no decision
//! ([`JS_WORKERS`]): the usual way (a copy of the request edited, the answer rebuilt over the
//! origin's body stream), which separates what the edits cost by themselves from what Keyplane
//! adds to them, and other ways or in part (a fresh `Headers` for the request, the answer
//! built from a copy of the origin's headers, the request id alone, the answer untouched),
//! which show what each part costs. The Keyplane edges ([`KEYPLANE_EDGES`]) add one whose
//! freshness bound is 60 s (`REPLICA_FRESHNESS_MS`: what keeping every isolate's copy fresh
//! costs), one with `RATE_LIMIT_HEADERS = "on_429"`, and, with `KEYPLANE_EDGE_BUILD_BEFORE`
//! naming a copy of an earlier `edge/build`, that build (a change against what it replaces).
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench edge_overhead -- [rounds] [seconds] [connections]`,
//! defaults 10, 3, 8). `KEYPLANE_EDGE_BENCH_ONLY`, a list of target names separated by `;`,
//! measures those alone beside the pass-through: more rounds of a few targets in the same
//! time, for a change whose effect is smaller than the spread of a round.
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

/// The JS workers measured beside Keyplane (`harness/edge.mjs`), by name: the pass-through,
/// Keyplane's edits made the usual way (the reference), and the same edits made other ways or
/// in part, to find what each costs and the cheapest way workerd offers.
const JS_WORKERS: [(&str, EdgeWorker); 9] = [
    ("pass-through worker", EdgeWorker::Passthrough),
    // `new Request(target, request)`, then its headers edited; `new Response(body, answer)`
    // and the six fields set.
    ("JS, Keyplane's edits", EdgeWorker::PassthroughWithEdits),
    // The same request edits, the answer rebuilt with the request id only (what `on_429`
    // leaves on an admitted request).
    (
        "JS, request id only",
        EdgeWorker::JsAlternative("js-copy-id"),
    ),
    // The same request edits, the origin's answer untouched: the floor for the answer's edits.
    (
        "JS, answer untouched",
        EdgeWorker::JsAlternative("js-copy-none"),
    ),
    // The request from an init dictionary (method, the incoming headers, body stream,
    // redirect) instead of the incoming request as init, then edited; the answer as above.
    (
        "JS, init-dict request",
        EdgeWorker::JsAlternative("js-dict-all"),
    ),
    (
        "JS, init-dict, id only",
        EdgeWorker::JsAlternative("js-dict-id"),
    ),
    // The answer with the draft's two rate-limit fields and the request id, without the legacy
    // `X-RateLimit-*` trio: what leaving the trio off admitted answers would save.
    (
        "JS, init-dict, draft pair",
        EdgeWorker::JsAlternative("js-dict-draft"),
    ),
    // The request on a new Headers of the kept fields plus the identity.
    (
        "JS, fresh headers",
        EdgeWorker::JsAlternative("js-fresh-all"),
    ),
    // The answer built on a copy of the origin's headers passed in its init.
    (
        "JS, answer from init",
        EdgeWorker::JsAlternative("js-copy-init"),
    ),
];

/// The Keyplane edges, by name, as `Deployment` numbers them (usage reporting is on unless
/// set off). With `KEYPLANE_EDGE_BUILD_BEFORE` set to another worker-build output, one more
/// edge runs that build, so a change is measured against what it replaces in the same run.
const KEYPLANE_EDGES: [(&str, &[(&str, &str)]); 5] = [
    ("keyplane, usage on", &[]),
    ("keyplane, usage off", &[("USAGE_REPORTING", "off")]),
    (
        "keyplane, off, 60 s fresh",
        &[
            ("USAGE_REPORTING", "off"),
            ("REPLICA_FRESHNESS_MS", "60000"),
        ],
    ),
    (
        "keyplane, off, on_429",
        &[("USAGE_REPORTING", "off"), ("RATE_LIMIT_HEADERS", "on_429")],
    ),
    ("keyplane, off, before", &[("USAGE_REPORTING", "off")]),
];

/// The ratios printed beyond each target's against the pass-through: (what, a, b) for a ÷ b.
const PAIRS: [(&str, &str, &str); 10] = [
    (
        "keyplane (usage off) / JS with Keyplane's edits",
        "keyplane, usage off",
        "JS, Keyplane's edits",
    ),
    (
        "keyplane (usage off) / JS init-dict request",
        "keyplane, usage off",
        "JS, init-dict request",
    ),
    (
        "keyplane on_429 / JS request id only",
        "keyplane, off, on_429",
        "JS, request id only",
    ),
    (
        "keyplane on_429 / JS init-dict, id only",
        "keyplane, off, on_429",
        "JS, init-dict, id only",
    ),
    (
        "keyplane on_429 / keyplane always",
        "keyplane, off, on_429",
        "keyplane, usage off",
    ),
    (
        "usage on / usage off",
        "keyplane, usage on",
        "keyplane, usage off",
    ),
    (
        "keyplane (usage off) / the same with 60 s freshness",
        "keyplane, usage off",
        "keyplane, off, 60 s fresh",
    ),
    (
        "keyplane (usage off) / the build before",
        "keyplane, usage off",
        "keyplane, off, before",
    ),
    (
        "JS init-dict: draft pair / all fields",
        "JS, init-dict, draft pair",
        "JS, init-dict request",
    ),
    (
        "JS request id only / JS answer untouched",
        "JS, request id only",
        "JS, answer untouched",
    ),
];

fn main() -> Result<()> {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let rounds = numbers.first().copied().unwrap_or(10).max(1) as usize;
    let seconds = numbers.get(1).copied().unwrap_or(3).max(1);
    let connections = numbers.get(2).copied().unwrap_or(8).max(1) as usize;
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    let before = std::env::var_os("KEYPLANE_EDGE_BUILD_BEFORE").map(std::path::PathBuf::from);
    let edges = if before.is_some() { 5 } else { 4 };
    let deployment = Deployment::start(&setup, edges, |options| {
        let index = options.name["edge-".len()..].parse().unwrap_or(0);
        for (name, value) in KEYPLANE_EDGES[index].1 {
            options.var(name, value);
        }
        if index == 4 {
            options.edge_build = before.clone();
        }
    })?;
    let (_, key) = deployment.create_key(json!({"name": "bench", "environment": "live"}))?;
    for edge in 0..edges {
        deployment.wait_for(Duration::from_secs(10), "key reaching the edge", || {
            Ok(deployment.through_edge(edge, "/x", Some(&key))?.status == 200)
        })?;
    }
    let path = "/v1/contacts/42?expand=owner";
    let mut baselines = Vec::new();
    let mut targets = Vec::new();
    for (name, worker) in JS_WORKERS {
        let mut options = EdgeOptions::new(name, "http://127.0.0.1:9", &deployment.origin.url);
        options.worker = worker;
        let service = setup.start_edge_with(&options, &deployment.secrets)?;
        targets.push(Target {
            name,
            url: format!("{}{path}", service.url),
            key: (worker != EdgeWorker::Passthrough).then(|| key.clone()),
            process_group: service.pid(),
            runs: Vec::new(),
        });
        baselines.push(service);
    }
    for (index, (name, _)) in KEYPLANE_EDGES.iter().take(edges).enumerate() {
        targets.push(Target {
            name,
            url: format!("{}{path}", deployment.edge_url(index)),
            key: Some(key.clone()),
            process_group: deployment
                .edge_process_group(index)
                .context("the edge is not running")?,
            runs: Vec::new(),
        });
    }
    if let Some(only) = std::env::var_os("KEYPLANE_EDGE_BENCH_ONLY") {
        let only = only.to_string_lossy().into_owned();
        let names: Vec<&str> = only.split(';').map(str::trim).collect();
        if let Some(unknown) = names
            .iter()
            .find(|name| !targets.iter().any(|target| target.name == **name))
        {
            bail!("KEYPLANE_EDGE_BENCH_ONLY names no target {unknown:?}");
        }
        let mut index = 0;
        targets.retain(|target| {
            index += 1;
            index == 1 || names.contains(&target.name)
        });
    }
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
        "edge overhead, {connections} connections, {rounds} rounds of {seconds} s per target \
         (ratios: median of the rounds', lowest–highest):"
    );
    let base = &targets[0];
    for target in &targets {
        let runs = &target.runs;
        let requests: u64 = runs.iter().map(|run| run.requests).sum();
        let elapsed: f64 = runs.iter().map(|run| run.elapsed.as_secs_f64()).sum();
        let cpu: f64 = runs.iter().map(|run| run.cpu_secs).sum();
        let mut latencies: Vec<Duration> = runs
            .iter()
            .flat_map(|run| run.latencies.iter().copied())
            .collect();
        latencies.sort();
        let (rps, rps_low, rps_high) = spread(per_round(target, base, Run::rps));
        let (cpu_ratio, _, _) = spread(per_round(target, base, Run::cpu_us_per_request));
        println!(
            "  {:<26} {:>6.0} req/s, p50 {:.2} ms, p99 {:.2} ms, CPU {:>4.0} µs/req; \
             ÷ pass-through: throughput {rps:.3} ({rps_low:.3}–{rps_high:.3}), CPU {cpu_ratio:.3}",
            target.name,
            requests as f64 / elapsed,
            quantile_ms(&latencies, 0.5),
            quantile_ms(&latencies, 0.99),
            cpu * 1e6 / requests.max(1) as f64
        );
    }
    let find = |name: &str| targets.iter().find(|target| target.name == name);
    for (what, a, b) in PAIRS {
        let (Some(a), Some(b)) = (find(a), find(b)) else {
            continue;
        };
        let (median, low, high) = spread(per_round(a, b, Run::rps));
        let (cpu, cpu_low, cpu_high) = spread(per_round(a, b, Run::cpu_us_per_request));
        println!(
            "  {what}: throughput {median:.3} ({low:.3}–{high:.3}), \
             CPU per request {cpu:.3} ({cpu_low:.3}–{cpu_high:.3})"
        );
    }
    let status = deployment.edge_status(0)?;
    println!("  edge-0 usage reporting: {}", status["usage"]);
    // What keeping each isolate's copy fresh took: reads ahead of the bound, in the
    // background, and reads requests waited for.
    for (index, (name, _)) in KEYPLANE_EDGES.iter().enumerate().take(edges) {
        let status = deployment.edge_status(index)?;
        println!("  {name}: store reads {}", status["store_reads"]);
    }
    drop(baselines);
    Ok(())
}

/// `figure(a) / figure(b)` for each round.
fn per_round(a: &Target, b: &Target, figure: fn(&Run) -> f64) -> Vec<f64> {
    a.runs
        .iter()
        .zip(&b.runs)
        .map(|(a, b)| figure(a) / figure(b))
        .collect()
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
