//! An isolate that needs the whole table is sent the store's stored copy: the snapshot the
//! store folded its batches into (after 256 of them), read from storage a chunk at a time,
//! then the changes stored after it. A fresh isolate, and an edge restarted on its storage,
//! must end with exactly the store's table: keys from the snapshot and from the later batches
//! admitted, a key removed in a later batch refused.

use anyhow::{Result, ensure};
use keyplane_shared::{
    ApiKey, Change, ChangeOp, Environment, KeyId, KeyPrefix, KeyStatus, OrgId, ScopeSet, TableEntry,
};
use keyplane_tests::{Deployment, EdgeFeed, Setup};
use serde_json::json;
use std::time::Duration;

/// More batches than the store keeps before folding them into a snapshot (256), so some land
/// before the fold and some after it.
const BATCHES: usize = 300;

fn status_at(url: &str, key: &str) -> Result<u16> {
    Ok(keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?.status)
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn fresh_isolates_and_a_restarted_edge_load_the_stored_snapshot_and_the_changes_after_it()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, 1, |options| {
        if let Err(error) = options.with_isolates(2) {
            eprintln!("isolates: {error:#}");
        }
        options.pull_interval_secs = 3_600;
    })?;
    let (_, real) = d.create_key(json!({"name": "real", "environment": "live"}))?;
    d.wait_for(
        Duration::from_secs(20),
        "the first isolate admits the key",
        || Ok(status_at(&d.edges[0].options.isolate_urls()[0], &real)? == 200),
    )?;
    let (mut feed, _) = EdgeFeed::of_first_edge(&d)?;
    d.stop_control_plane();

    // One key per batch; the last batch removes the first key (which is in the snapshot).
    let peppers = d.secrets.pepper_set()?;
    let keys: Vec<ApiKey> = (0..BATCHES)
        .map(|_| ApiKey::generate(&KeyPrefix::default(), Environment::Live))
        .collect::<Result<_, _>>()?;
    for (n, key) in keys.iter().enumerate() {
        let mut batch = vec![Change {
            seq: feed.next_seq(),
            op: ChangeOp::Upsert(TableEntry {
                digest: peppers.current().digest(key),
                key_id: KeyId::from_bytes((n as u128 + 1).to_be_bytes()),
                org_id: OrgId::from_bytes([7; 16]),
                env: Environment::Live,
                status: KeyStatus::Active,
                expires_at: None,
                scopes: ScopeSet::empty(),
                rate_limit: None,
            }),
        }];
        if n + 1 == BATCHES {
            batch.push(Change {
                seq: feed.next_seq() + 1,
                op: ChangeOp::Remove(peppers.current().digest(&keys[0])),
            });
        }
        feed.push(&d, &batch)?;
    }

    let expectations = [
        (real.as_str(), 200, "the control plane's key"),
        (
            keys[10].expose_secret(),
            200,
            "a key in the stored snapshot",
        ),
        (
            keys[BATCHES - 2].expose_secret(),
            200,
            "a key stored after the snapshot",
        ),
        (
            keys[0].expose_secret(),
            401,
            "a key removed after the snapshot",
        ),
    ];
    let check = |url: &str, who: &str| -> Result<()> {
        for (key, expected, what) in expectations {
            let status = status_at(url, key)?;
            ensure!(status == expected, "{who}: {what} answered {status}");
        }
        Ok(())
    };
    check(&d.edges[0].options.isolate_urls()[1], "a fresh isolate")?;
    d.stop_edge(0);
    d.launch_edge(0)?;
    check(&d.edges[0].options.isolate_urls()[0], "a restarted edge")?;
    Ok(())
}
