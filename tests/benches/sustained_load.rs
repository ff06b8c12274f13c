//! Sustained load on the edge with revocations made during it: for `seconds` (default 60) a
//! closed-loop generator sends requests as fast as this machine lets it, over `connections`
//! keep-alive connections (default 8), spread over `keys` live keys (default 100), while one of
//! them is revoked through the control plane's API every 2.4 s (one per 3 s of the run, spread
//! over its first 80 %). The edge reports usage
//! to the control plane all along, as a real deployment does.
//!
//! Run: `cargo bench -p keyplane-tests --bench sustained_load -- [seconds] [connections] [keys]`
//! after `cargo xtask build`.
//!
//! What it checks (the run fails otherwise), and reports:
//! - no 5xx and no failed connection, over every request of the run;
//! - no key admitted after its revocation reached the edge: per key, the first 401 the load
//!   saw ends the key's life at that edge, and no 200 may answer a request sent after it (the
//!   edge runs one isolate, so "reached the edge" is one moment);
//! - memory flat: every 5 s after a 5 s warm-up, the worker's WebAssembly linear memory (from
//!   its signed status: everything the Rust side holds) must not grow by more than 1 MiB; and
//!   the edge's resident memory (workerd and its node harness, summed from `/proc`) must not
//!   grow by more than 64 MiB beyond what a pass-through worker's grows under the same load
//!   for as long (the JavaScript runtime's own heap settles upward for a while under any load).
//!
//! The pass-through worker runs first, under the same workerd and generator, for the same
//! time: the baseline of both the rate (given as a ratio) and the resident memory.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use keyplane_tests::{Deployment, EdgeOptions, EdgeWorker, Setup};
use serde_json::json;

/// How long the load runs before memory is first sampled.
const WARM_UP: Duration = Duration::from_secs(5);
/// How often memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Largest growth of the worker's linear memory allowed after warm-up.
const WASM_GROWTH_LIMIT_MIB: f64 = 1.0;
/// How much more the edge's resident memory may grow than the pass-through's over as long.
const RESIDENT_MARGIN_MIB: f64 = 64.0;
const MIB: f64 = 1024.0 * 1024.0;

/// What one key's requests saw, by time.
#[derive(Debug, Default, Clone, Copy)]
struct KeyLife {
    /// When the first 401 for it was received.
    first_refusal: Option<Instant>,
    /// When the last request that was answered 200 was sent.
    last_admitted_send: Option<Instant>,
}

/// What the generator counted.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    failures: u64,
    first_failure: Option<String>,
    lives: Vec<KeyLife>,
}

fn main() -> Result<()> {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let seconds = numbers.first().copied().unwrap_or(60).max(10);
    let connections = numbers.get(1).copied().unwrap_or(8).max(1) as usize;
    let key_count = numbers.get(2).copied().unwrap_or(100).max(2) as usize;
    let duration = Duration::from_secs(seconds);
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    let deployment = Deployment::start(&setup, 1, |_| {})?;
    let mut keys = Vec::with_capacity(key_count);
    for n in 0..key_count {
        keys.push(
            deployment.create_key(json!({"name": format!("load-{n}"), "environment": "live"}))?,
        );
    }
    for (_, key) in &keys {
        deployment.wait_for(Duration::from_secs(20), "keys reaching the edge", || {
            Ok(deployment.through_edge(0, "/x", Some(key))?.status == 200)
        })?;
    }
    let edge_group = deployment
        .edge_process_group(0)
        .context("the edge is not running")?;
    let control_plane_pid = deployment
        .control_plane_pid()
        .context("the control plane is not running")?;

    // The baseline: the same generator, as long, against a pass-through worker.
    let mut options = EdgeOptions::new("passthrough", "http://127.0.0.1:9", &deployment.origin.url);
    options.worker = EdgeWorker::Passthrough;
    let passthrough = setup.start_edge_with(&options, &deployment.secrets)?;
    let path = "/v1/contacts/42";
    let no_key = vec![String::new()];
    let baseline = Sampled::run(duration, passthrough.pid(), None, |stop| {
        generate(
            &format!("{}{path}", passthrough.url),
            &no_key,
            connections,
            duration,
            stop,
        )
    })?;
    drop(passthrough);

    // The sustained run. Revocations are spread over its first 80 %, each at a fixed moment
    // from the start (API time does not push the later ones back), so the load has time to
    // see each one refused before it ends.
    let revocations = (seconds / 3).clamp(1, key_count as u64 / 2) as usize;
    let edge_url = format!("{}{path}", deployment.edge_url(0));
    let key_texts: Vec<String> = keys.iter().map(|(_, key)| key.clone()).collect();
    let revoked_at: Mutex<Vec<(usize, Instant)>> = Mutex::new(Vec::new());
    let keyplane = Sampled::run(duration, edge_group, Some(&deployment), |stop| {
        std::thread::scope(|scope| -> Result<Tally> {
            let revoker = scope.spawn(|| -> Result<()> {
                let started = Instant::now();
                let gap = duration.mul_f64(0.8) / revocations as u32;
                for (index, (id, _)) in keys.iter().enumerate().take(revocations) {
                    let due = gap * (index as u32 + 1);
                    std::thread::sleep(due.saturating_sub(started.elapsed()));
                    let reply = deployment.api(
                        "POST",
                        &format!("/v1/keys/{id}/revoke"),
                        Some(json!({"reason": "compromised"})),
                    )?;
                    ensure!(reply.status == 200, "revoking {id}: {reply:?}");
                    revoked_at
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((index, Instant::now()));
                }
                Ok(())
            });
            let tally = generate(&edge_url, &key_texts, connections, duration, stop);
            revoker
                .join()
                .map_err(|_| anyhow::anyhow!("revoker panicked"))??;
            tally
        })
    })?;
    let control_plane_rss = process_rss_mib(control_plane_pid)?;
    let revoked_at = revoked_at
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let tally = &keyplane.tally;

    // What happened to each revoked key.
    let mut reach = Vec::new();
    let mut late_admissions = 0;
    for &(index, at) in &revoked_at {
        let life = tally.lives[index];
        let Some(refused) = life.first_refusal else {
            bail!("key {index} was revoked but the load never saw a 401 for it");
        };
        reach.push(refused.saturating_duration_since(at));
        if life.last_admitted_send.is_some_and(|sent| sent > refused) {
            late_admissions += 1;
        }
    }
    reach.sort();
    let total = tally.total();
    let rps = keyplane.rps();
    let baseline_rps = baseline.rps();
    let fivexx: u64 = tally
        .statuses
        .iter()
        .filter(|(status, _)| **status >= 500)
        .map(|(_, count)| count)
        .sum();
    println!(
        "sustained load: {seconds} s, {connections} connections, {key_count} keys, {} revoked during it",
        revoked_at.len()
    );
    println!(
        "  {total} requests, {rps:.0} req/s; pass-through worker {baseline_rps:.0} req/s over as long in the same run (ratio {:.3})",
        rps / baseline_rps
    );
    println!(
        "  answers: {:?}; failed connections {}{}",
        tally.statuses,
        tally.failures,
        tally
            .first_failure
            .as_deref()
            .map(|failure| format!(" (first: {failure})"))
            .unwrap_or_default()
    );
    println!(
        "  revocation -> first 401 seen by the load: median {:.0} ms, max {:.0} ms",
        quantile_ms(&reach, 0.5),
        quantile_ms(&reach, 1.0)
    );
    println!("  admissions of a key after its revocation reached the edge: {late_admissions}");
    println!(
        "  memory at t (MiB): workerd + harness resident, keyplane | pass-through; keyplane's wasm linear memory"
    );
    for (ours, theirs) in keyplane.samples.iter().zip(&baseline.samples) {
        println!(
            "    {:>5.1} s  {:>7.1} | {:>7.1}   {:>6.1}",
            ours.at.as_secs_f64(),
            ours.resident_mib,
            theirs.resident_mib,
            ours.wasm_mib.unwrap_or(f64::NAN)
        );
    }
    let ours = keyplane.growth()?;
    let theirs = baseline.growth()?;
    let wasm = keyplane.wasm_growth()?;
    println!(
        "  growth after warm-up: resident {:+.1} MiB (pass-through {:+.1} MiB), wasm linear memory {:+.1} MiB; control plane resident {control_plane_rss:.1} MiB at the end",
        ours, theirs, wasm
    );
    ensure!(fivexx == 0, "{fivexx} answers were 5xx");
    ensure!(tally.failures == 0, "{} requests failed", tally.failures);
    ensure!(
        late_admissions == 0,
        "{late_admissions} keys were admitted after their revocation reached the edge"
    );
    ensure!(
        wasm <= WASM_GROWTH_LIMIT_MIB,
        "the worker's linear memory grew by {wasm:.1} MiB under a steady load"
    );
    ensure!(
        ours <= theirs + RESIDENT_MARGIN_MIB,
        "the edge's resident memory grew by {ours:.1} MiB, the pass-through's by {theirs:.1} MiB"
    );
    Ok(())
}

/// One memory sample.
struct Sample {
    at: Duration,
    /// The edge's processes' resident memory, summed.
    resident_mib: f64,
    /// The Keyplane worker's linear memory (from its status), when it has one.
    wasm_mib: Option<f64>,
}

/// A load's tally, how long it ran, and its memory samples.
struct Sampled {
    tally: Tally,
    elapsed: Duration,
    samples: Vec<Sample>,
}

impl Sampled {
    /// Runs `load` while sampling the memory of process group `group` (and of `deployment`'s
    /// edge 0's linear memory, when given) every [`SAMPLE_EVERY`] after [`WARM_UP`].
    fn run(
        duration: Duration,
        group: u32,
        deployment: Option<&Deployment>,
        load: impl FnOnce(&AtomicBool) -> Result<Tally>,
    ) -> Result<Self> {
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| -> Result<Vec<Sample>> {
                let mut samples = Vec::new();
                std::thread::sleep(WARM_UP);
                while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                    let wasm_mib = match deployment {
                        Some(d) => Some(
                            d.edge_status(0)?["wasm_memory_bytes"]
                                .as_f64()
                                .context("wasm_memory_bytes in the edge's status")?
                                / MIB,
                        ),
                        None => None,
                    };
                    samples.push(Sample {
                        at: started.elapsed(),
                        resident_mib: group_rss_mib(group)?,
                        wasm_mib,
                    });
                    std::thread::sleep(SAMPLE_EVERY);
                }
                Ok(samples)
            });
            let tally = load(&stop);
            stop.store(true, Ordering::Relaxed);
            let elapsed = started.elapsed();
            let samples = sampler
                .join()
                .map_err(|_| anyhow::anyhow!("sampler panicked"))??;
            Ok(Self {
                tally: tally?,
                elapsed,
                samples,
            })
        })
    }

    fn rps(&self) -> f64 {
        self.tally.total() as f64 / self.elapsed.as_secs_f64()
    }

    fn growth(&self) -> Result<f64> {
        match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => Ok(last.resident_mib - first.resident_mib),
            _ => bail!("no memory samples"),
        }
    }

    fn wasm_growth(&self) -> Result<f64> {
        match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => {
                Ok(last.wasm_mib.unwrap_or(0.0) - first.wasm_mib.unwrap_or(0.0))
            }
            _ => bail!("no memory samples"),
        }
    }
}

impl Tally {
    fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures
    }

    fn merge(&mut self, other: Tally) {
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        if self.lives.len() < other.lives.len() {
            self.lives.resize(other.lives.len(), KeyLife::default());
        }
        for (mine, theirs) in self.lives.iter_mut().zip(other.lives) {
            mine.first_refusal = match (mine.first_refusal, theirs.first_refusal) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            mine.last_admitted_send = mine.last_admitted_send.max(theirs.last_admitted_send);
        }
    }
}

/// `connections` threads, each sending back to back on one keep-alive connection, cycling
/// through `keys` (an empty key: no header) from its own offset, until `duration` is over.
fn generate(
    url: &str,
    keys: &[String],
    connections: usize,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<Tally> {
    let start = Instant::now();
    let sent_total = AtomicU64::new(0);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|thread| {
                let sent_total = &sent_total;
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(10)))
                        .build()
                        .into();
                    let mut tally = Tally {
                        lives: vec![KeyLife::default(); keys.len()],
                        ..Tally::default()
                    };
                    let mut next = thread;
                    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                        let index = next % keys.len();
                        next += connections;
                        let key = &keys[index];
                        let sent = Instant::now();
                        let mut request = agent.get(url);
                        if !key.is_empty() {
                            request = request.header("x-api-key", key);
                        }
                        let outcome = request.call().and_then(|mut response| {
                            response.body_mut().read_to_vec()?;
                            Ok(response.status().as_u16())
                        });
                        sent_total.fetch_add(1, Ordering::Relaxed);
                        match outcome {
                            Ok(status) => {
                                *tally.statuses.entry(status).or_default() += 1;
                                let life = &mut tally.lives[index];
                                match status {
                                    200 => {
                                        life.last_admitted_send =
                                            life.last_admitted_send.max(Some(sent));
                                    }
                                    401 if life.first_refusal.is_none() => {
                                        life.first_refusal = Some(Instant::now());
                                    }
                                    _ => {}
                                }
                            }
                            Err(error) => {
                                tally.failures += 1;
                                tally.first_failure.get_or_insert_with(|| error.to_string());
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    let mut total = Tally {
        lives: vec![KeyLife::default(); keys.len()],
        ..Tally::default()
    };
    for tally in tallies {
        total.merge(tally);
    }
    ensure!(
        total.total() == sent_total.load(Ordering::Relaxed),
        "a load thread was lost"
    );
    Ok(total)
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
}

/// Resident memory of one process, in MiB.
fn process_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    rss_of(&status).with_context(|| format!("no VmRSS for {pid}"))
}

fn rss_of(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
}

/// Resident memory of every process in process group `group`, summed, in MiB.
fn group_rss_mib(group: u32) -> Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the command name: state, ppid, pgrp.
        let in_group = rest.split_whitespace().nth(2) == Some(group.to_string().as_str());
        if in_group
            && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(rss) = rss_of(&status)
        {
            total += rss;
        }
    }
    Ok(total)
}
