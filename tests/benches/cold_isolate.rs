//! Cold start benchmark: the first request of a fresh isolate, from the Durable Object's
//! storage to the decision, with a key table of 100k and of 1M keys.
//!
//! Run: `cargo xtask bench-edge` (or, after `cargo xtask build`:
//! `cargo bench -p keyplane-tests --bench cold_isolate -- [keys…]`, default `100000 1000000`).
//!
//! For each size: one edge of three isolates (workerd through miniflare, storage on disk) and
//! the real control plane. A real key is made through the API and accepted by the first
//! isolate; then the control plane is stopped and the benchmark, holding the deployment's sync
//! secret, pushes that many synthetic keys to the edge as the control plane would (signed
//! batches continuing the feed's chain), in 256 batches so that the store folds them into a
//! stored snapshot, as it does after that many. Two figures follow, each the time from sending
//! a request with the real key to its answer (200 from the origin):
//!
//! - *fresh isolate*: the second isolate's first request. The store is warm; the isolate asks
//!   it for the table, receives a snapshot, decodes it and decides. Then the third isolate's.
//! - *fresh edge*: the edge is stopped and started again on its storage, and the first
//!   isolate's first request is timed: the store reads its stored snapshot (SQLite, 1 MiB
//!   chunks), decodes it, tries its catch-up pull (the control plane is down: refused at
//!   once), and the isolate copies the table as above. Three restarts; the median and range.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::codec::{decode_changes, encode_changes};
use keyplane_shared::{
    Change, ChangeOp, Environment, FeedChain, KeyId, KeyStatus, LookupDigest, OrgId, ScopeSet,
    TableEntry,
};
use keyplane_tests::{Deployment, Setup, signed};
use serde_json::json;

/// Batches the synthetic keys arrive in: the store's `COMPACT_AFTER_BATCHES`, so the last one
/// folds them into a stored snapshot.
const BATCHES: u64 = 256;
/// Restarts timed for the fresh-edge figure.
const RESTARTS: usize = 3;

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
        "| keys | fresh isolate, store warm | another fresh isolate | fresh edge (store from disk), median of {RESTARTS} (range) |"
    );
    println!("|---:|---:|---:|---:|");
    for keys in sizes {
        let figures = measure(&setup, keys)?;
        println!(
            "| {keys} | {:.0} ms | {:.0} ms | {:.0} ms ({:.0}–{:.0}) |",
            figures.fresh_isolate,
            figures.another_isolate,
            figures.edge[1],
            figures.edge[0],
            figures.edge[2]
        );
    }
    Ok(())
}

struct Figures {
    fresh_isolate: f64,
    another_isolate: f64,
    /// Sorted.
    edge: Vec<f64>,
}

fn measure(setup: &Setup, keys: u64) -> Result<Figures> {
    let mut d = Deployment::start(setup, 1, |options| {
        options
            .with_isolates(3)
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
    let status = d.edge_status(0)?;
    let history = HistoryId::parse(status["history"].as_str().context("history")?)
        .map_err(|error| anyhow::anyhow!("history: {error}"))?;
    let seq = status["applied_seq"].as_u64().context("applied_seq")?;
    let feed = signed(
        &d.secrets,
        "GET",
        &d.control_plane.url,
        &format!("/v1/edge/changes?after=0&limit={seq}"),
        Vec::new(),
    )?;
    let changes = decode_changes(&feed.bytes)?;
    if changes.len() as u64 != seq {
        bail!(
            "the feed gave {} changes, the edge is at {seq}",
            changes.len()
        );
    }
    let chain = FeedChain::genesis(history).extend(&changes);
    d.stop_control_plane();

    let started = Instant::now();
    push_synthetic_keys(&d, history, seq, chain, keys)?;
    let pushed = started.elapsed();
    let status = d.edge_status(0)?;
    if status["keys"].as_u64() != Some(keys + seq_keys(&changes)) {
        bail!("after the pushes the edge holds {}", status["keys"]);
    }
    eprintln!("{keys} keys pushed in {BATCHES} batches in {pushed:.1?}");

    let fresh_isolate = first_answer_ms(&d, 1, &key)?;
    let another_isolate = first_answer_ms(&d, 2, &key)?;
    let mut edge = Vec::new();
    for _ in 0..RESTARTS {
        d.stop_edge(0);
        d.launch_edge(0)?;
        edge.push(first_answer_ms(&d, 0, &key)?);
    }
    edge.sort_by(f64::total_cmp);
    Ok(Figures {
        fresh_isolate,
        another_isolate,
        edge,
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

/// Pushes `keys` synthetic keys after sequence `after`, as the control plane's pusher would.
fn push_synthetic_keys(
    d: &Deployment,
    history: HistoryId,
    mut after: u64,
    mut chain: FeedChain,
    keys: u64,
) -> Result<()> {
    let scopes = ScopeSet::parse(["contacts:read"]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let per_batch = keys.div_ceil(BATCHES);
    let mut next = 0u64;
    while next < keys {
        let batch: Vec<Change> = (next..keys.min(next + per_batch))
            .zip(after + 1..)
            .map(|(n, seq)| Change {
                seq,
                op: ChangeOp::Upsert(TableEntry {
                    digest: synthetic_digest(n),
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
        let path = format!(
            "/__keyplane/sync?edge={}&history={history}&after={after}&chain={}",
            d.edges[0].options.name,
            chain.to_hex()
        );
        let reply = signed(
            &d.secrets,
            "POST",
            &d.edge_url(0),
            &path,
            encode_changes(&batch),
        )?;
        if reply.status != 200 {
            bail!("push after {after}: {reply:?}");
        }
        chain = chain.extend(&batch);
        next += batch.len() as u64;
        after += batch.len() as u64;
    }
    Ok(())
}

/// SplitMix64 over the index: digests spread like HMAC output.
fn synthetic_digest(n: u64) -> LookupDigest {
    let mut bytes = [0u8; 32];
    for (i, chunk) in (0u64..).zip(bytes.chunks_mut(8)) {
        let mut z = (n << 2 | i).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    LookupDigest::from_bytes(bytes)
}
