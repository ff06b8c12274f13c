//! The pull safety net: an edge that receives no push at all (its `EDGE_URL` leads nowhere, so
//! every push the control plane makes fails) still follows the feed through its Durable
//! Object's periodic pull, within `PULL_INTERVAL_SECS` plus the isolate's freshness bound.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use keyplane_tests::{Deployment, Setup};
use serde_json::json;

/// The pull interval the edge runs with here.
const PULL_INTERVAL_SECS: u32 = 2;
/// What the bound allows beyond the pull interval: the isolate's freshness bound (100 ms by
/// default) and one feed read, with room for a loaded 2-core machine. Without the pull the
/// changes would never arrive at all.
const SLACK: Duration = Duration::from_secs(8);

fn no_push_deployment(setup: &Setup) -> Result<Deployment> {
    Deployment::start(setup, 1, |options| {
        // Nothing listens there: the control plane's pushes to this edge all fail.
        options.var("EDGE_URL", "http://127.0.0.1:9/");
        options.pull_interval_secs = PULL_INTERVAL_SECS;
    })
}

/// Polls edge 0 until `key` gets `status`; how long that took.
fn time_until(d: &Deployment, key: &str, status: u16, bound: Duration) -> Result<Duration> {
    let started = Instant::now();
    d.wait_for(bound, &format!("the edge answering {status}"), || {
        Ok(d.through_edge(0, "/x", Some(key))?.status == status)
    })?;
    Ok(started.elapsed())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_edge_no_push_reaches_admits_new_keys_and_refuses_revoked_ones_after_its_next_pull()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = no_push_deployment(&setup)?;
    let bound = Duration::from_secs(u64::from(PULL_INTERVAL_SECS)) + SLACK;
    let (old_id, old_key) =
        d.create_key(json!({"name": "before", "environment": "live", "scopes": []}))?;
    let first = time_until(&d, &old_key, 200, bound)?;

    let (_, new_key) =
        d.create_key(json!({"name": "after", "environment": "live", "scopes": []}))?;
    let revoked = d.api(
        "POST",
        &format!("/v1/keys/{old_id}/revoke"),
        Some(json!({"reason": "compromised"})),
    )?;
    ensure!(revoked.status == 200, "revoke: {revoked:?}");
    let admitted = time_until(&d, &new_key, 200, bound)?;
    let refused = time_until(&d, &old_key, 401, bound)?;
    eprintln!(
        "pull-only edge: first key after {first:?}, new key {admitted:?}, revoked key +{refused:?}"
    );

    // The registry shows the edge pulling (seen, at the head) while every push to it fails.
    d.wait_for(bound, "the registry showing the last pull", || {
        let listed =
            setup.keyplane(&["edges", "list", "--data-dir"], d.control_plane.data_dir())?;
        let head = listed
            .lines()
            .find_map(|line| line.strip_prefix("feed head: "))
            .unwrap_or_default()
            .to_owned();
        let row: Vec<String> = listed
            .lines()
            .find(|line| line.starts_with("edge-0\t"))
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .unwrap_or_default();
        // name, url, acked, pulled, behind, last seen, last error
        Ok(row.len() == 7
            && row[3] == head
            && row[4] == "0"
            && row[5] != "never"
            && row[6].contains("error sending request"))
    })?;
    Ok(())
}
