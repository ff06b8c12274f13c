//! Rate-limit accuracy across isolates: one edge runs as 3 isolates (each its own worker and
//! port, sharing one Durable Object namespace, as the isolates and locations of one
//! Cloudflare deployment do), and a burst of requests of one key (limit 100/min, bursts of
//! 10) is sent round-robin across them; the admitted requests are counted against what one
//! exact counter admits, in each `RATE_LIMIT_MODE`.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench rate_limit_accuracy -- [burst]`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use keyplane_tests::{Deployment, Reply, Setup};
use serde_json::json;

fn main() -> Result<()> {
    let burst: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(60);
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    println!(
        "rate-limit accuracy, limit 100/min with bursts of 10, {burst} requests round-robin over 3 isolates of one edge:"
    );
    for mode in ["isolate", "global"] {
        let deployment = Deployment::start(&setup, 1, |options| {
            options.rate_limit = (100, 10);
            options.var("RATE_LIMIT_MODE", mode);
            if let Err(error) = options.with_isolates(3) {
                eprintln!("no free port: {error}");
            }
        })?;
        let isolates = deployment.edges[0].options.isolate_urls();
        anyhow::ensure!(isolates.len() == 3, "the edge runs 3 isolates");
        let (_, key) = deployment.create_key(json!({"name": "burst", "environment": "live"}))?;
        let (_, marker) =
            deployment.create_key(json!({"name": "marker", "environment": "live"}))?;
        for isolate in &isolates {
            deployment.wait_for(Duration::from_secs(10), "keys reaching the isolate", || {
                Ok(get(isolate, &marker)?.status == 200)
            })?;
        }
        let start = Instant::now();
        let mut admitted = [0usize; 3];
        for request in 0..burst {
            let isolate = request % 3;
            if get(&isolates[isolate], &key)?.status == 200 {
                admitted[isolate] += 1;
            }
        }
        let elapsed = start.elapsed();
        // What one exact counter would admit over the burst's duration: the burst plus one
        // request per 600 ms.
        let exact = 10 + (elapsed.as_millis() / 600) as usize;
        let total: usize = admitted.iter().sum();
        println!(
            "  {mode:<8} admitted {total} of {burst} in {:.0} ms (per isolate {admitted:?}); one exact counter: {exact}; ratio {:.2}",
            elapsed.as_secs_f64() * 1000.0,
            total as f64 / exact as f64
        );
    }
    Ok(())
}

fn get(isolate: &str, key: &str) -> Result<Reply> {
    keyplane_tests::get(&format!("{isolate}/x"), &[("x-api-key", key)])
}
