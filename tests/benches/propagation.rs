//! Propagation benchmark: with 3 edges under workerd and the real control plane, the time from a
//! revoke call returning to every edge answering 401 for that key, over N revocations.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench propagation -- [revocations]`).
//!
//! Each round creates a key, waits until all edges accept it, revokes it, then polls every edge
//! from its own thread (a request every ~1 ms) until it answers 401; the round's figure is the
//! slowest edge. What bounds it: the push (one HTTP request per edge from the control plane's
//! pusher, woken by the commit) plus the edge's Durable Object write and isolate refresh; the
//! pull every PULL_INTERVAL_SECS only matters when a push is lost.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_tests::{Deployment, Setup};
use serde_json::json;

const EDGES: usize = 3;

fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100);
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    let deployment = Deployment::start(&setup, EDGES, |_| {})?;
    let mut slowest = Vec::with_capacity(rounds);
    let mut per_edge = Vec::with_capacity(rounds * EDGES);
    for round in 0..rounds {
        let (id, key) =
            deployment.create_key(json!({"name": format!("p{round}"), "environment": "live"}))?;
        for edge in 0..EDGES {
            deployment.wait_for(Duration::from_secs(10), "key reaching the edge", || {
                Ok(deployment.through_edge(edge, "/x", Some(&key))?.status == 200)
            })?;
        }
        let reply = deployment.api(
            "POST",
            &format!("/v1/keys/{id}/revoke"),
            Some(json!({"reason": "other"})),
        )?;
        let returned = Instant::now();
        if reply.status != 200 {
            bail!("revoke failed: {reply:?}");
        }
        let times: Vec<Duration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..EDGES)
                .map(|edge| {
                    let (deployment, key) = (&deployment, &key);
                    scope.spawn(move || -> Result<Duration> {
                        loop {
                            if deployment.through_edge(edge, "/x", Some(key))?.status == 401 {
                                return Ok(returned.elapsed());
                            }
                            if returned.elapsed() > Duration::from_secs(30) {
                                bail!("edge {edge} still accepts a key revoked 30 s ago");
                            }
                            // A breath between polls: three busy pollers on a 2-core machine
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
        })?;
        per_edge.extend(times.iter().copied());
        slowest.extend(times.iter().max().copied());
    }
    report("every edge answering 401 (slowest of 3)", &mut slowest);
    report("each edge answering 401", &mut per_edge);
    Ok(())
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
