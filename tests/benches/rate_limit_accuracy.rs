//! Rate-limit accuracy across edges: with 3 edges running, a burst of requests of one key
//! (limit 100/min, bursts of 10) is sent round-robin across them, and the admitted requests are
//! counted against the limit, in each `RATE_LIMIT_MODE`.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench rate_limit_accuracy -- [burst]`).
//!
//! Locally every edge is its own workerd process, so each has its own Durable Object
//! namespace: in `global` mode the three edges here do not share counters the way isolates
//! and locations of one Cloudflare deployment share a key's object. What this measures is the
//! per-edge behaviour of each mode; see the README for what it implies on Cloudflare.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use keyplane_tests::{Deployment, Setup};
use serde_json::json;

fn main() -> Result<()> {
    let burst: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(60);
    let setup = Setup::from_env().context("run `cargo xtask build` first")?;
    println!(
        "rate-limit accuracy, limit 100/min with bursts of 10, {burst} requests round-robin over 3 edges:"
    );
    for mode in ["isolate", "global"] {
        let deployment = Deployment::start(&setup, 3, |options| {
            options.rate_limit = (100, 10);
            options.var("RATE_LIMIT_MODE", mode);
        })?;
        let (_, key) = deployment.create_key(json!({"name": "burst", "environment": "live"}))?;
        let (_, marker) =
            deployment.create_key(json!({"name": "marker", "environment": "live"}))?;
        for edge in 0..3 {
            deployment.wait_for(Duration::from_secs(10), "keys reaching the edge", || {
                Ok(deployment.through_edge(edge, "/x", Some(&marker))?.status == 200)
            })?;
        }
        let start = Instant::now();
        let mut admitted = [0usize; 3];
        for request in 0..burst {
            let edge = request % 3;
            if deployment.through_edge(edge, "/x", Some(&key))?.status == 200 {
                admitted[edge] += 1;
            }
        }
        let elapsed = start.elapsed();
        // What one exact counter would admit over the burst's duration: the burst plus one
        // request per 600 ms.
        let exact = 10 + (elapsed.as_millis() / 600) as usize;
        let total: usize = admitted.iter().sum();
        println!(
            "  {mode:<8} admitted {total} of {burst} in {:.0} ms (per edge {admitted:?}); one exact counter: {exact}; ratio {:.2}",
            elapsed.as_secs_f64() * 1000.0,
            total as f64 / exact as f64
        );
    }
    Ok(())
}
