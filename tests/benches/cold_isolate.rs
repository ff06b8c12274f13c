//! Cold start benchmark: the first request of a fresh isolate, from the Durable Object's
//! storage to the decision, with a key table of 100k and of 1M keys.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench cold_isolate -- [keys…]`, default `100000 1000000`).
//!
//! For each size: one edge of five isolates (workerd through miniflare, storage on disk) and
//! the real control plane. A real key is made through the API and accepted by the first
//! isolate; then the control plane is stopped and the benchmark, holding the deployment's sync
//! secret, pushes that many synthetic keys to the edge as the control plane would (signed
//! batches continuing the feed's chain), in 256 batches so that the store folds them into a
//! stored snapshot, as it does after that many. Two figures follow, each the time from sending
//! a request with the real key to its answer (200 from the origin):
//!
//! - *fresh isolate*: the first request of each of four more isolates, one after another, two
//!   seconds after the last push. The store is warm; each isolate asks it for the table,
//!   receives the stored snapshot a chunk at a time, builds its table as the chunks arrive,
//!   applies the changes stored after it, and decides.
//! - *fresh edge*: the edge is stopped and started again on its storage, and the first
//!   isolate's first request is timed: the store reads where storage stands (the snapshot's
//!   header, its lineage, the batches' head row) without building its table, tries its
//!   catch-up pull (the control plane is down: refused at once), and the isolate copies the
//!   table as above. Three restarts; the median and range.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_shared::{
    Change, ChangeOp, Environment, KeyId, KeyStatus, OrgId, ScopeSet, TableEntry,
};
use keyplane_tests::{Deployment, EdgeFeed, Setup, signed};
use serde_json::json;

// The synthetic digests of shared's tests and hot-path benchmark (SplitMix64 over the index).
#[allow(dead_code)]
#[path = "../../shared/tests/support/mod.rs"]
mod support;

/// Batches the synthetic keys arrive in: the store's `COMPACT_AFTER_BATCHES`, so the last one
/// folds them into a stored snapshot.
const BATCHES: u64 = 256;
/// Restarts timed for the fresh-edge figure.
const RESTARTS: usize = 3;
/// Fresh isolates timed against the warm store (the edge runs one more, which takes the pushes).
const FRESH_ISOLATES: usize = 4;
/// Pause between the last push and the first timed request: the store has just written a 48 MB
/// snapshot, and a fresh isolate's first request is timed, not that write's aftermath.
const SETTLE: Duration = Duration::from_secs(2);

fn main() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        bail!("the edge is not built: run `cargo xtask build` first");
    };
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .map(|arg| arg.parse().context("sizes are key counts"))
        .collect::<Result<_>>()?;
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "| keys | fresh isolate, store warm: median of {FRESH_ISOLATES} (range) | fresh edge (store from disk): median of {RESTARTS} (range) | isolate's wasm memory after its first request, largest |"
    );
    println!("|---:|---:|---:|---:|");
    for keys in sizes {
        let figures = measure(&setup, keys)?;
        println!(
            "| {keys} | {} | {} | {:.1} MB ({:.1} bytes per key) |",
            median_and_range(&figures.isolates),
            median_and_range(&figures.edge),
            figures.wasm_memory as f64 / 1e6,
            figures.wasm_memory as f64 / keys as f64
        );
    }
    Ok(())
}

/// Times in ms, each sorted; the largest wasm linear memory of a fresh isolate (it never
/// shrinks, so it is that isolate's peak).
struct Figures {
    isolates: Vec<f64>,
    edge: Vec<f64>,
    wasm_memory: u64,
}

fn median_and_range(sorted: &[f64]) -> String {
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    format!(
        "{median:.0} ms ({:.0}–{:.0})",
        sorted[0],
        sorted[sorted.len() - 1]
    )
}

fn measure(setup: &Setup, keys: u64) -> Result<Figures> {
    let mut d = Deployment::start(setup, 1, |options| {
        options
            .with_isolates(1 + FRESH_ISOLATES)
            .expect("free ports for the isolates");
        // No pull during the run: the control plane is stopped once the keys are pushed.
        options.pull_interval_secs = 3_600;
    })?;
    let (_, key) =
        d.create_key(json!({"name": "cold start", "environment": "live", "scopes": []}))?;
    d.wait_for(
        Duration::from_secs(20),
        "the first isolate accepts the key",
        || Ok(d.through_edge(0, "/x", Some(&key))?.status == 200),
    )?;
    let (mut feed, changes) = EdgeFeed::of_first_edge(&d)?;
    d.stop_control_plane();

    let started = Instant::now();
    push_synthetic_keys(&d, &mut feed, keys)?;
    let pushed = started.elapsed();
    let status = d.edge_status(0)?;
    if status["keys"].as_u64() != Some(keys + seq_keys(&changes)) {
        bail!("after the pushes the edge holds {}", status["keys"]);
    }
    eprintln!("{keys} keys pushed in {BATCHES} batches in {pushed:.1?}");

    let mut isolates = (1..=FRESH_ISOLATES)
        .map(|isolate| {
            std::thread::sleep(SETTLE);
            first_answer_ms(&d, isolate, &key)
        })
        .collect::<Result<Vec<f64>>>()?;
    isolates.sort_by(f64::total_cmp);
    let mut wasm_memory = 0;
    for url in &d.edges[0].options.isolate_urls()[1..] {
        let status = signed(&d.secrets, "GET", url, "/__keyplane/status", Vec::new())?.json()?;
        let bytes = status["wasm_memory_bytes"]
            .as_u64()
            .context("wasm_memory_bytes")?;
        wasm_memory = wasm_memory.max(bytes);
    }
    let mut edge = Vec::new();
    for _ in 0..RESTARTS {
        d.stop_edge(0);
        d.launch_edge(0)?;
        edge.push(first_answer_ms(&d, 0, &key)?);
    }
    edge.sort_by(f64::total_cmp);
    Ok(Figures {
        isolates,
        edge,
        wasm_memory,
    })
}

/// Keys the feed's changes leave in the table (upserts of distinct digests, none removed).
fn seq_keys(changes: &[Change]) -> u64 {
    let mut digests: Vec<[u8; 32]> = changes
        .iter()
        .filter_map(|change| match &change.op {
            ChangeOp::Upsert(entry) => Some(*entry.digest.as_bytes()),
            ChangeOp::Remove(_) => None,
        })
        .collect();
    digests.sort_unstable();
    digests.dedup();
    digests.len() as u64
}

/// The time from sending a request with `key` to isolate `isolate` to its answer, which must
/// be the origin's 200.
fn first_answer_ms(d: &Deployment, isolate: usize, key: &str) -> Result<f64> {
    let url = d.edges[0].options.isolate_urls()[isolate].clone();
    let started = Instant::now();
    let reply = keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    if reply.status != 200 {
        bail!("isolate {isolate} answered {}", reply.status);
    }
    Ok(elapsed)
}

/// Pushes `keys` synthetic keys in [`BATCHES`] batches, as the control plane's pusher would.
fn push_synthetic_keys(d: &Deployment, feed: &mut EdgeFeed, keys: u64) -> Result<()> {
    let scopes = ScopeSet::parse(["contacts:read"]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = u32::try_from(keys).context("at most 2^32 synthetic keys")?;
    let per_batch = keys.div_ceil(BATCHES as u32);
    let mut next = 0u32;
    while next < keys {
        let batch: Vec<Change> = (next..keys.min(next + per_batch))
            .zip(feed.next_seq()..)
            .map(|(n, seq)| Change {
                seq,
                op: ChangeOp::Upsert(TableEntry {
                    digest: support::pseudo_random_digest(n),
                    key_id: KeyId::from_bytes(u128::from(n + 1).to_be_bytes()),
                    org_id: OrgId::from_bytes([(n % 997) as u8; 16]),
                    env: Environment::Live,
                    status: KeyStatus::Active,
                    expires_at: None,
                    scopes: scopes.clone(),
                    rate_limit: None,
                }),
            })
            .collect();
        feed.push(d, &batch)?;
        next += per_batch;
    }
    Ok(())
}
