//! Propagation benchmark: with 3 edges under workerd, each running 3 isolates, and the real
//! control plane, the time from a revoke call returning to every isolate of every edge
//! answering 401 for that key, over N revocations.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench propagation -- [revocations] [--instances N] [--postgres]`).
//!
//! By default one control plane on its SQLite file. `--instances N` runs N `keyplane serve` on
//! one PostgreSQL database (a fresh one at 127.0.0.1:5432), edge `i` pulling from instance
//! `i % N`; each round's key is made through one instance and revoked through the next, so the
//! revocation reaches the edges through the other instances' `LISTEN` as often as through the
//! instance that committed it. `--postgres` alone runs one instance on PostgreSQL: the same
//! database with one instance, the figure to set the several-instance one beside.
//!
//! Each edge's isolates play three parts: the first takes the control plane's pushes (`push`),
//! the second serves another key's traffic all along (`busy`: a request every ~2 ms), the
//! third sees nothing between rounds (`idle`: its copy of the table is older than the
//! freshness bound when the revocation comes). Each round creates a key, waits until every
//! isolate accepts it, lets the idle ones go idle (300 ms), revokes the key, then polls every
//! isolate from its own thread (a request every ~1 ms) until it answers 401; the round's figure
//! is the slowest isolate. What bounds it: the push (one HTTP request per edge from the
//! control plane's pusher, woken by the commit) plus the Durable Object's write, then each
//! isolate's freshness bound (`REPLICA_FRESHNESS_MS`, 100 ms: a copy older than that is
//! brought up to date before a decision, and busy isolates refresh ahead from half of it).
//!
//! After every tenth round comes a leak round: the same, but the key is revoked by posting it
//! to `POST /v1/leaks/report` (as a person or a scanner who found it would), timed from that
//! call's answer. Ten of them at most in a run: the route allows ten reports at once per
//! address, then one every 6 seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_tests::{Deployment, Setup, TestDatabase, Topology};
use serde_json::json;

const EDGES: usize = 3;
const ISOLATES: usize = 3;
const ROLES: [&str; ISOLATES] = ["push", "busy", "idle"];
/// Leak rounds in a run at most (the report route's allowance per address at once).
const MAX_LEAK_ROUNDS: usize = 10;

/// How a round's key is revoked.
#[derive(Clone, Copy)]
enum Revocation {
    /// `POST /v1/keys/{id}/revoke` with the admin key.
    Api,
    /// `POST /v1/leaks/report` with the key's full text, no credential.
    LeakReport,
}

fn status_at(url: &str, key: &str) -> Result<u16> {
    Ok(keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?.status)
}

/// The command line: revocations, instances, and whether the database is PostgreSQL.
struct Options {
    rounds: usize,
    instances: usize,
    postgres: bool,
}

impl Options {
    fn from_args() -> Result<Self> {
        let mut options = Options {
            rounds: 100,
            instances: 1,
            postgres: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--instances" => {
                    options.instances = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n >= 1)
                        .context("--instances takes a number of at least 1")?;
                }
                "--postgres" => options.postgres = true,
                other => {
                    if let Ok(rounds) = other.parse() {
                        options.rounds = rounds;
                    }
                }
            }
        }
        options.postgres |= options.instances > 1;
        Ok(options)
    }
}

fn main() -> Result<()> {
    let Options {
        rounds,
        instances,
        postgres,
    } = Options::from_args()?;
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    let database = match postgres {
        // No PostgreSQL: said why, and nothing to measure here (the other benchmarks go on).
        true => match TestDatabase::create()? {
            Some(database) => Some(database),
            None => return Ok(()),
        },
        false => None,
    };
    let topology = match &database {
        Some(database) => Topology::postgres(instances, &database.url(), EDGES),
        None => Topology::sqlite(EDGES),
    };
    let deployment = Deployment::start_with(&setup, &topology, |options| {
        if let Err(error) = options.with_isolates(ISOLATES) {
            eprintln!("isolates: {error:#}");
        }
    })?;
    println!(
        "{instances} control-plane instance(s) on {}, {EDGES} edges x {ISOLATES} isolates",
        if postgres { "PostgreSQL" } else { "SQLite" }
    );
    let isolates: Vec<Vec<String>> = deployment
        .edges
        .iter()
        .map(|edge| edge.options.isolate_urls())
        .collect();
    if isolates.iter().any(|urls| urls.len() != ISOLATES) {
        bail!("every edge needs {ISOLATES} isolates: {isolates:?}");
    }
    let (_, load_key) = deployment.create_key(json!({"name": "load", "environment": "live"}))?;
    let stop = AtomicBool::new(false);
    let mut slowest = Vec::with_capacity(rounds);
    let mut by_role: [Vec<Duration>; ISOLATES] = Default::default();
    let mut leaks = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        for urls in &isolates {
            let (busy, load_key, stop) = (&urls[1], &load_key, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = status_at(busy, load_key);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        let outcome = (0..rounds).try_for_each(|round| {
            let times = one_round(&deployment, &isolates, round, Revocation::Api)?;
            for (index, time) in times.iter().enumerate() {
                by_role[index % ISOLATES].push(*time);
            }
            slowest.extend(times.iter().max().copied());
            if round % 10 == 9 && leaks.len() < MAX_LEAK_ROUNDS {
                let times = one_round(&deployment, &isolates, round, Revocation::LeakReport)?;
                leaks.extend(times.iter().max().copied());
            }
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        outcome
    })?;
    report(
        &format!("every isolate answering 401 (slowest of {EDGES} edges x {ISOLATES} isolates)"),
        &mut slowest,
    );
    for (role, samples) in ROLES.iter().zip(by_role.iter_mut()) {
        report(&format!("{role} isolates answering 401"), samples);
    }
    if !leaks.is_empty() {
        report(
            &format!(
                "a leak report answered -> every isolate answering 401 (slowest of {EDGES} x {ISOLATES})"
            ),
            &mut leaks,
        );
    }
    Ok(())
}

/// One revocation; how long each isolate (edge by edge, in role order) took to refuse it.
fn one_round(
    d: &Deployment,
    isolates: &[Vec<String>],
    round: usize,
    how: Revocation,
) -> Result<Vec<Duration>> {
    // Made through one instance, revoked through the next (the same one when there is one).
    let instances = d.instances();
    let (made_by, revoked_by) = (round % instances, (round + 1) % instances);
    let (id, key) = d.create_key_via(
        made_by,
        json!({"name": format!("p{round}"), "environment": "live"}),
    )?;
    for url in isolates.iter().flatten() {
        d.wait_for(Duration::from_secs(10), "key reaching the isolate", || {
            Ok(status_at(url, &key)? == 200)
        })?;
    }
    // Long enough for the idle isolates' copies to be past the freshness bound.
    std::thread::sleep(Duration::from_millis(300));
    let (reply, expected) = match how {
        Revocation::Api => (
            d.api_via(
                revoked_by,
                "POST",
                &format!("/v1/keys/{id}/revoke"),
                Some(json!({"reason": "other"})),
            )?,
            200,
        ),
        Revocation::LeakReport => (
            keyplane_tests::send(
                "POST",
                &format!("{}/v1/leaks/report", d.instance_url(revoked_by)),
                &[],
                Some(&json!({"key": key, "url": "https://gist.example.com/bench"})),
            )?,
            202,
        ),
    };
    let returned = Instant::now();
    if reply.status != expected {
        bail!("the revocation failed: {reply:?}");
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = isolates
            .iter()
            .flatten()
            .map(|url| {
                let key = &key;
                scope.spawn(move || -> Result<Duration> {
                    loop {
                        if status_at(url, key)? == 401 {
                            return Ok(returned.elapsed());
                        }
                        if returned.elapsed() > Duration::from_secs(30) {
                            bail!("{url} still accepts a key revoked 30 s ago");
                        }
                        // A breath between polls: nine busy pollers on a 2-core machine
                        // would starve the edges and the control plane they measure.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("poller panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    println!(
        "propagation, {what}: n={} p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
