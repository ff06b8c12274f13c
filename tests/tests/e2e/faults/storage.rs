//! The edge's own storage failing: another process holds the write lock of the Durable
//! Object's SQLite file ([`StorageLock`]), so every write the store makes fails while keys are
//! revoked and created. The store still enforces what it pulled (it keeps the change in memory
//! and sends it to isolates), and once storage takes writes again it writes its whole table,
//! even with the control plane down (its alarm does): an edge restarted from storage then
//! still refuses the revoked key.
//! And an edge whose stored table does not decode starts with none (it refuses every key
//! rather than guess) and loads the control plane's snapshot by its next pull.

use std::time::Duration;

use anyhow::{Result, ensure};
use keyplane_tests::{Damage, Deployment, Setup, StorageLock, corrupt_stored_snapshot};
use serde_json::json;

/// The edge's pull interval here: the pulls bring the changes the refused pushes did not.
const PULL_INTERVAL_SECS: u32 = 1;
/// A bound for a change to reach the edge on a loaded machine (the pusher backs off while the
/// edge refuses its pushes).
const PROPAGATION: Duration = Duration::from_secs(20);

fn status(d: &Deployment, key: &str) -> Result<u16> {
    Ok(d.through_edge(0, "/x", Some(key))?.status)
}

fn until_status(d: &Deployment, key: &str, wanted: u16, what: &str) -> Result<()> {
    d.wait_for(PROPAGATION, what, || Ok(status(d, key)? == wanted))?;
    Ok(())
}

/// A deployment of one edge that pulls every [`PULL_INTERVAL_SECS`], with a live key named
/// after each of `names` (its id and key, in order), admitted by the edge.
fn edge_with_keys<const N: usize>(
    setup: &Setup,
    names: [&str; N],
) -> Result<(Deployment, [(String, String); N])> {
    let d = Deployment::start(setup, 1, |options| {
        options.pull_interval_secs = PULL_INTERVAL_SECS;
    })?;
    let keys: Vec<_> = names
        .iter()
        .map(|name| d.create_key(json!({"name": name, "environment": "live"})))
        .collect::<Result<_>>()?;
    for (_, key) in &keys {
        until_status(&d, key, 200, "the edge has the first keys")?;
    }
    let keys = keys
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key for each name"))?;
    Ok((d, keys))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn changes_that_reach_an_edge_whose_storage_refuses_writes_are_enforced_and_then_stored()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, [(revoked_id, revoked), (_, kept)]) = edge_with_keys(&setup, ["revoked", "kept"])?;
    let stored_before = d.edge_status(0)?["store"]["after_snapshot"].clone();

    // A key revoked and one created while the edge is stopped: it learns both by its catch-up
    // pull when it starts, with storage refusing every write.
    d.stop_edge(0);
    let path = format!("/v1/keys/{revoked_id}/revoke");
    let reply = d.api("POST", &path, Some(json!({"reason": "compromised"})))?;
    ensure!(reply.status == 200, "revoking: {reply:?}");
    let (_, created) = d.create_key(json!({"name": "created", "environment": "live"}))?;
    let lock = StorageLock::hold(&d, 0)?;
    d.start_edge(0)?;
    until_status(
        &d,
        &revoked,
        401,
        "the revocation, while storage refuses writes",
    )?;
    until_status(
        &d,
        &created,
        200,
        "the new key, while storage refuses writes",
    )?;
    let stored = d.edge_status(0)?["store"]["after_snapshot"].clone();
    ensure!(
        stored == stored_before,
        "nothing is stored while the lock is held: {stored_before} then {stored}"
    );

    // Storage takes writes again, with the control plane down: no push and no feed page come,
    // and the store's alarm writes its whole table (folding the stored batches into it).
    d.stop_control_plane();
    drop(lock);
    d.wait_for(PROPAGATION, "the table written to storage", || {
        Ok(d.edge_status(0)?["store"]["after_snapshot"]["batches"] == json!(0))
    })?;
    // Restarted from storage alone.
    d.stop_edge(0);
    d.start_edge(0)?;
    ensure!(status(&d, &revoked)? == 401, "the revocation was lost");
    ensure!(status(&d, &created)? == 200, "the new key was lost");
    ensure!(status(&d, &kept)? == 200, "the kept key");
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_edge_whose_stored_table_does_not_decode_refuses_every_key_until_it_loads_a_snapshot()
-> Result<()> {
    refuses_every_key_until_it_loads_a_snapshot(Damage::Whole)
}

/// The store takes a snapshot whose header holds for one without decoding it on start
/// (`edge/src/store/unloaded.rs`): the isolate that cannot decode it says so, and the store
/// then finds the damage itself.
#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_edge_whose_stored_snapshot_is_damaged_past_its_header_refuses_every_key_until_it_loads_one()
-> Result<()> {
    refuses_every_key_until_it_loads_a_snapshot(Damage::AfterHeader)
}

/// An edge restarted on storage whose snapshot is damaged as `damage` says, with the control
/// plane down: every key refused (no 5xx); then the control plane's snapshot restores it, and
/// a later restart from storage has it.
fn refuses_every_key_until_it_loads_a_snapshot(damage: Damage) -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, [(_, key)]) = edge_with_keys(&setup, ["stored"])?;
    d.stop_edge(0);
    corrupt_stored_snapshot(&d, 0, damage)?;
    // The control plane down: nothing but the corrupt storage to start from.
    d.stop_control_plane();
    d.start_edge(0)?;
    let reply = d.through_edge(0, "/x", Some(&key))?;
    ensure!(
        reply.status == 401,
        "a key, with storage that does not decode: {reply:?}"
    );
    d.restart_control_plane()?;
    until_status(&d, &key, 200, "the key, from the control plane's snapshot")?;
    // The snapshot was written to storage: a restart with the control plane down has it.
    d.stop_control_plane();
    d.stop_edge(0);
    d.start_edge(0)?;
    ensure!(status(&d, &key)? == 200, "the key, from repaired storage");
    Ok(())
}
