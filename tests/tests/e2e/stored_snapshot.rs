//! An isolate that needs the whole table is sent the store's stored copy: the snapshot the
//! store folded its batches into (after 256 of them), read from storage a chunk at a time,
//! then the changes stored after it. A fresh isolate, and an edge restarted on its storage,
//! must end with exactly the store's table: keys from the snapshot and from the later batches
//! admitted, a key removed in a later batch refused. The store folds its batches by size as
//! well (past 4 MiB): a few large batches are folded as many small ones are. A batch larger
//! than a storage row (2 MB) is stored in pieces.

use anyhow::{Result, ensure};
use keyplane_shared::table::codec::encode_changes;
use keyplane_shared::{ApiKey, Change, ChangeOp, Environment, KeyPrefix};
use keyplane_tests::{
    Deployment, EdgeFeed, Setup, forget_batches_head, synthetic_key, synthetic_keys,
};
use serde_json::json;
use std::time::Duration;

/// More batches than the store keeps before folding them into a snapshot (256), so some land
/// before the fold and some after it.
const BATCHES: usize = 300;

fn status_at(url: &str, key: &str) -> Result<u16> {
    Ok(keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?.status)
}

/// A deployment whose edge runs two isolates and pulls only hourly: the control plane's key
/// (returned) is created and admitted by the first isolate, then the control plane stops, so
/// from here on only the test's pushes (the returned feed) change the edge's table.
fn deployment_fed_by_the_test(setup: &Setup) -> Result<(Deployment, String, EdgeFeed)> {
    let mut d = Deployment::start(setup, 1, |options| {
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
    let (feed, _) = EdgeFeed::of_first_edge(&d)?;
    d.stop_control_plane();
    Ok((d, real, feed))
}

/// The encoded bytes of one synthetic key's change, on average.
fn bytes_per_change() -> usize {
    let sample = synthetic_keys(1, 100, 0);
    encode_changes(&sample).len() / sample.len()
}

/// Each `(key, expected status, what it is)` as answered by an isolate that loads the whole
/// table (the second, never asked before), then by the first after the edge restarted on its
/// storage.
fn fresh_isolate_and_restarted_edge_answer(
    d: &mut Deployment,
    expectations: &[(&str, u16, &str)],
) -> Result<()> {
    let check = |url: &str, who: &str| -> Result<()> {
        for &(key, expected, what) in expectations {
            let status = status_at(url, key)?;
            ensure!(status == expected, "{who}: {what} answered {status}");
        }
        Ok(())
    };
    check(&d.edges[0].options.isolate_urls()[1], "a fresh isolate")?;
    d.stop_edge(0);
    d.launch_edge(0)?;
    check(&d.edges[0].options.isolate_urls()[0], "a restarted edge")
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn fresh_isolates_and_a_restarted_edge_load_the_stored_snapshot_and_the_changes_after_it()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, real, mut feed) = deployment_fed_by_the_test(&setup)?;

    // One key per batch; the last batch removes the first key (which is in the snapshot).
    let peppers = d.secrets.pepper_set()?;
    let keys: Vec<ApiKey> = (0..BATCHES)
        .map(|_| ApiKey::generate(&KeyPrefix::default(), Environment::Live))
        .collect::<Result<_, _>>()?;
    for (n, key) in keys.iter().enumerate() {
        let mut batch = vec![synthetic_key(
            feed.next_seq(),
            peppers.current().digest(key),
            n as u64,
        )];
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
    fresh_isolate_and_restarted_edge_answer(&mut d, &expectations)?;

    // The restarted store answered from storage without building its own table, knowing where
    // storage stands from the batches' head row; the next change (a push, accepted only if
    // its chain is the store's) builds the table from storage and applies.
    let place = |d: &Deployment| -> Result<serde_json::Value> {
        Ok(d.edge_status(0)?["store"]["table"].clone())
    };
    ensure!(place(&d)? == "storage", "after the restart: {}", place(&d)?);
    let mut removed = Vec::new();
    for (round, key) in [&keys[10], &keys[11]].into_iter().enumerate() {
        feed.push(
            &d,
            &[Change {
                seq: feed.next_seq(),
                op: ChangeOp::Remove(peppers.current().digest(key)),
            }],
        )?;
        removed.push(key);
        ensure!(place(&d)? == "memory", "after a change: {}", place(&d)?);
        let url = d.edges[0].options.isolate_urls()[0].clone();
        for key in &removed {
            ensure!(
                status_at(&url, key.expose_secret())? == 401,
                "{round}: a removed key"
            );
        }
        for (key, expected, what) in [
            (
                keys[12].expose_secret(),
                200,
                "a key in the stored snapshot",
            ),
            (
                keys[BATCHES - 2].expose_secret(),
                200,
                "a key stored after it",
            ),
            (keys[0].expose_secret(), 401, "a key removed after it"),
            (real.as_str(), 200, "the control plane's key"),
        ] {
            ensure!(status_at(&url, key)? == expected, "{round}: {what}");
        }
        if round == 0 {
            // Again without the head row (storage from before it): the store replays its
            // stored batches to learn where it stands, and the next push still follows.
            d.stop_edge(0);
            forget_batches_head(&d, 0)?;
            d.launch_edge(0)?;
            ensure!(place(&d)? == "storage", "without the head: {}", place(&d)?);
        }
    }
    Ok(())
}

/// The stored change batches' size past which the store folds them into a snapshot
/// (`COMPACT_AFTER_BYTES` in `edge/src/store/mod.rs`).
const COMPACT_AFTER_BYTES: usize = 4 << 20;

/// Large batches pushed in the folding test.
const ROUNDS: u64 = 5;

/// What edge 0's store holds in storage, from its signed status: (snapshot chunks, batches
/// after the snapshot, their bytes).
fn stored(d: &Deployment) -> Result<(i64, i64, usize)> {
    let status = d.edge_status(0)?;
    let store = &status["store"];
    let number = |value: &serde_json::Value| {
        value
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no store figures in the edge's status: {status}"))
    };
    Ok((
        number(&store["snapshot_chunks"])?,
        number(&store["after_snapshot"]["batches"])?,
        usize::try_from(number(&store["after_snapshot"]["bytes"])?)?,
    ))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_few_large_batches_are_folded_into_a_snapshot_past_four_mebibytes() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, real, mut feed) = deployment_fed_by_the_test(&setup)?;
    let (chunks_before, batches_before, bytes_before) = stored(&d)?;

    // Batches of about 0.225 × the bound each (0.9 MiB: each stored whole, under the 1 MiB
    // the store splits larger ones at): four stay under it, the fifth passes it, while five
    // batches are far from the 256 the store also folds at.
    let changes_per_batch = (COMPACT_AFTER_BYTES * 9 / 40 / bytes_per_change()) as u64;
    let peppers = d.secrets.pepper_set()?;
    let late = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
    let mut pushed = bytes_before;
    for round in 1..=ROUNDS {
        let first = feed.next_seq();
        let mut batch = synthetic_keys(first, changes_per_batch, round);
        if round == ROUNDS {
            let last = batch.len() - 1;
            batch[last] = synthetic_key(first + last as u64, peppers.current().digest(&late), 42);
        }
        pushed += encode_changes(&batch).len();
        feed.push(&d, &batch)?;
        let (chunks, batches, bytes) = stored(&d)?;
        if round < ROUNDS {
            ensure!(
                pushed <= COMPACT_AFTER_BYTES,
                "the test's batches are too large: {pushed} bytes after {round}"
            );
            ensure!(
                (chunks, batches, bytes) == (chunks_before, batches_before + round as i64, pushed),
                "after {round} large batches the store holds {chunks} chunks and {batches} \
                 batches of {bytes} bytes (expected {chunks_before}, {} and {pushed})",
                batches_before + round as i64
            );
        } else {
            ensure!(
                pushed > COMPACT_AFTER_BYTES,
                "the test's batches are too small: {pushed} bytes"
            );
            ensure!(
                batches == 0 && bytes == 0 && chunks > chunks_before,
                "{pushed} bytes of batches were not folded into a snapshot: the store holds \
                 {chunks} chunks and {batches} batches of {bytes} bytes"
            );
        }
    }
    // What was folded is what an isolate that needs the whole table, or a restarted edge, gets.
    fresh_isolate_and_restarted_edge_answer(
        &mut d,
        &[
            (real.as_str(), 200, "the control plane's key"),
            (late.expose_secret(), 200, "a key of the last large batch"),
        ],
    )
}

/// The largest string, BLOB or row a Durable Object's SQLite storage takes.
const STORAGE_ROW_LIMIT: usize = 2_000_000;

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_batch_larger_than_a_storage_row_is_stored_in_pieces() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, real, mut feed) = deployment_fed_by_the_test(&setup)?;
    let (_, batches_before, bytes_before) = stored(&d)?;

    // One push of about 1.5 storage rows (under the 4 MiB fold and the 8 MiB push bound), which
    // ends by removing the control plane's key and adding another.
    let peppers = d.secrets.pepper_set()?;
    let real_digest = peppers
        .current()
        .digest(&ApiKey::parse(&real, &KeyPrefix::default())?);
    let late = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
    let first = feed.next_seq();
    let count = (STORAGE_ROW_LIMIT * 3 / 2 / bytes_per_change()) as u64;
    let mut batch = synthetic_keys(first, count, 1);
    batch.push(Change {
        seq: first + count,
        op: ChangeOp::Remove(real_digest),
    });
    batch.push(synthetic_key(
        first + count + 1,
        peppers.current().digest(&late),
        42,
    ));
    let encoded = encode_changes(&batch).len();
    ensure!(
        encoded > STORAGE_ROW_LIMIT && bytes_before + encoded < COMPACT_AFTER_BYTES,
        "the test's batch should pass a storage row but not the fold: {encoded} bytes"
    );
    feed.push(&d, &batch)?;

    let (_, batches, bytes) = stored(&d)?;
    ensure!(
        batches >= batches_before + 2 && bytes >= bytes_before + encoded,
        "a push of {encoded} bytes is not all in storage: {batches} batches of {bytes} bytes \
         (before: {batches_before} of {bytes_before})"
    );
    fresh_isolate_and_restarted_edge_answer(
        &mut d,
        &[
            (real.as_str(), 401, "a key the large batch removed"),
            (late.expose_secret(), 200, "a key the large batch added"),
        ],
    )
}
