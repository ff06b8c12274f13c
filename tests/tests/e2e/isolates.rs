//! Every isolate of an edge decides on a current table: a revocation the edge's store holds is
//! enforced by every isolate within `REPLICA_FRESHNESS_MS` (100 ms by default), whether it
//! was idle or busy, and not only by the isolate the push passed through. Each isolate's status
//! counts the reads of the store that kept it so (`store_reads`): the idle one's first request
//! waited for one, the busy one read ahead in the background.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use keyplane_tests::{Deployment, Setup};
use serde_json::json;

const ISOLATES: usize = 3;
/// The edge's default freshness bound.
const FRESHNESS: Duration = Duration::from_millis(100);
const PROPAGATION: Duration = Duration::from_secs(15);

fn deployment(setup: &Setup) -> Result<Deployment> {
    Deployment::start(setup, 1, |options| {
        if let Err(error) = options.with_isolates(ISOLATES) {
            eprintln!("isolates: {error:#}");
        }
    })
}

fn status_at(url: &str, key: &str) -> Result<u16> {
    Ok(keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?.status)
}

/// The isolate's reads of the store, as its status counts them (`background`, `waiting`).
fn store_reads(d: &Deployment, url: &str) -> Result<(u64, u64)> {
    let reads = d.status_at(url)?["store_reads"].clone();
    let count = |what: &str| {
        reads[what]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("{url}: no store_reads.{what} in its status"))
    };
    Ok((count("background")?, count("waiting")?))
}

/// The reads of the store requests at the isolate waited for.
fn waiting_reads(d: &Deployment, url: &str) -> Result<u64> {
    Ok(store_reads(d, url)?.1)
}

/// Creates a key, waits until every isolate admits it, revokes it and waits until the
/// isolate the push lands on (the first) refuses it; the key, and when that refusal came.
fn revoked_at_the_first_isolate(
    d: &Deployment,
    urls: &[String],
    before_revoking: impl FnOnce(),
) -> Result<(String, Instant)> {
    let (id, key) = d.create_key(json!({"name": "k", "environment": "live"}))?;
    for url in urls {
        d.wait_for(PROPAGATION, &format!("{url} admitting the key"), || {
            Ok(status_at(url, &key)? == 200)
        })?;
    }
    before_revoking();
    let revoked = d.api(
        "POST",
        &format!("/v1/keys/{id}/revoke"),
        Some(json!({"reason": "compromised"})),
    )?;
    ensure!(revoked.status == 200, "{revoked:?}");
    d.wait_for(PROPAGATION, "the first isolate refusing the key", || {
        Ok(status_at(&urls[0], &key)? == 401)
    })?;
    Ok((key, Instant::now()))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_idle_isolate_refuses_a_revoked_key_on_its_very_first_request() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    let urls = d.edges[0].options.isolate_urls();
    ensure!(urls.len() == ISOLATES, "{urls:?}");
    // Idle well past the freshness bound (and past the old one-second background refresh).
    let mut waited_before = Vec::new();
    let (key, _) = revoked_at_the_first_isolate(&d, &urls, || {
        waited_before = urls[1..].iter().map(|url| waiting_reads(&d, url)).collect();
        std::thread::sleep(Duration::from_millis(1_500));
    })?;
    for (url, before) in urls[1..].iter().zip(waited_before) {
        ensure!(
            status_at(url, &key)? == 401,
            "{url}, idle, decided on an old copy of the table"
        );
        // That request waited for a read of the store, and the isolate's status counts it.
        let (before, after) = (before?, waiting_reads(&d, url)?);
        ensure!(after > before, "{url}: reads waited for {before} → {after}");
    }
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_busy_isolate_refuses_a_revoked_key_within_the_freshness_bound() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    let urls = d.edges[0].options.isolate_urls();
    ensure!(urls.len() == ISOLATES, "{urls:?}");
    let busy = urls[ISOLATES - 1].clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Another key keeps the last isolate busy for the whole test.
    let (_, other) = d.create_key(json!({"name": "load", "environment": "live"}))?;
    std::thread::scope(|scope| -> Result<()> {
        let load = scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = status_at(&busy, &other);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let outcome = revoked_at_the_first_isolate(&d, &urls, || {}).and_then(|(key, at)| {
            // The store had the revocation at `at`; past the bound (with a little slack for
            // the request's own way), every decision of the busy isolate sees it.
            std::thread::sleep(FRESHNESS + Duration::from_millis(50));
            let status = status_at(&busy, &key)?;
            ensure!(
                status == 401,
                "the busy isolate admitted a key revoked {:?} earlier",
                at.elapsed()
            );
            Ok(())
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = load.join();
        outcome?;
        // Its copy was kept fresh by reads started ahead of the bound, in the background.
        let (background, waiting) = store_reads(&d, &busy)?;
        ensure!(
            background > 0,
            "the busy isolate read the store in the background {background} times ({waiting} \
             reads waited for)"
        );
        Ok(())
    })
}
