//! A store that meets another feed history (a control plane on a re-created or restored
//! database) replaces its table with that feed's snapshot, and never holds the old table and
//! the new one at once: the old one is set aside while the new one is decoded
//! (storage holds it). Meanwhile a fresh isolate is sent storage's copy and pushes are
//! answered 503 `table_reloading`; a reload whose snapshot is refused half-way reads the
//! table back from storage and loses nothing.
//!
//! An isolate, too, builds one table at a time: a burst of first requests at a fresh isolate
//! builds its table once, the other requests waiting for that build. And an isolate whose copy
//! is over `REPLICA_KEEP_WHILE_REBUILDING_MB` drops it before it builds a new generation's
//! table: its requests wait for the build, and none is refused.
//!
//! The control plane is stopped once the edge has its first key; the feed proxy between them
//! then answers for it, with a feed of another history and a snapshot of the test's own,
//! signed for each request as the control plane signs.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_shared::ids::HistoryId;
use keyplane_shared::sync;
use keyplane_shared::table::codec::{encode_changes, encode_snapshot};
use keyplane_shared::{ApiKey, Environment, FeedChain, KeyPrefix, KeyTable, LookupDigest};
use keyplane_tests::{
    Damage, Deployment, EdgeFeed, FeedProxy, Setup, Tamper, corrupt_stored_snapshot, synthetic_key,
    synthetic_keys,
};
use serde_json::json;

/// The edge's pull interval in these tests.
const PULL_INTERVAL_SECS: u32 = 2;
/// The bound for the edge to follow the feed on a loaded machine.
const PROPAGATION: Duration = Duration::from_secs(20);
/// Keys in the table replaced in the memory test: enough for their table (some 20 MB) to
/// stand out of the isolate's other memory.
const KEYS: u64 = 300_000;

/// An edge of `isolates` isolates fed through a feed proxy, whose control plane created one
/// key (returned, admitted at the second isolate) and then stopped; the edge's feed position.
/// Only the test's pushes (through the second isolate) and the proxy's answers change the
/// edge's table from here on, and no request reaches the first isolate, where the store runs.
fn deployment_behind_a_proxy(
    setup: &Setup,
    isolates: usize,
    vars: &[(&str, &str)],
) -> Result<(Deployment, FeedProxy, String, EdgeFeed)> {
    let proxy = RefCell::new(None);
    let mut d = Deployment::start(setup, 1, |options| {
        // No pushes from the control plane: the edge pulls through the proxy.
        match FeedProxy::in_front_of(options) {
            Ok(started) => *proxy.borrow_mut() = Some(started),
            Err(error) => eprintln!("feed proxy: {error:#}"),
        }
        options.pull_interval_secs = PULL_INTERVAL_SECS;
        for (name, value) in vars {
            options.var(name, value);
        }
        if let Err(error) = options.with_isolates(isolates) {
            eprintln!("isolates: {error:#}");
        }
    })?;
    let proxy = proxy.into_inner().context("the feed proxy started")?;
    let (_, real) = d.create_key(json!({"name": "real", "environment": "live"}))?;
    let second = second_isolate(&d)?;
    d.wait_for(PROPAGATION, "the edge pulls the key", || {
        Ok(status_at(&second, &real)? == 200)
    })?;
    let (feed, _) = EdgeFeed::of_isolate(&d, &second)?;
    d.stop_control_plane();
    Ok((d, proxy, real, feed))
}

fn second_isolate(d: &Deployment) -> Result<String> {
    d.edges[0]
        .options
        .isolate_urls()
        .get(1)
        .cloned()
        .context("a second isolate")
}

fn status_at(url: &str, key: &str) -> Result<u16> {
    // Some requests wait for an isolate to build a table of 300,000 keys: a second or two on
    // an idle machine, many more on a loaded one.
    let reply = keyplane_tests::send_with_timeout(
        "GET",
        &format!("{url}/x"),
        &[("x-api-key", key)],
        None,
        Duration::from_secs(60),
    )?;
    Ok(reply.status)
}

/// The WebAssembly memory of the isolate the store runs in.
fn store_memory(d: &Deployment, url: &str) -> Result<u64> {
    d.status_at(url)?["store"]["isolate_memory_bytes"]
        .as_u64()
        .context("store.isolate_memory_bytes")
}

/// A table of `count` synthetic keys (`round` keeping them apart from others) at sequence
/// `count`.
fn table_of(count: u64, round: u64) -> Result<KeyTable> {
    let mut table = KeyTable::new();
    for change in synthetic_keys(1, count, round) {
        table.apply(&change)?;
    }
    Ok(table)
}

/// `table` with one more key, whose lookup digest is `digest`, at the next sequence.
fn with_key(mut table: KeyTable, digest: LookupDigest) -> Result<KeyTable> {
    table.apply(&synthetic_key(table.applied_seq() + 1, digest, 77))?;
    Ok(table)
}

/// What a control plane on another database, of feed `history`, answers: `snapshot` as the
/// body of its snapshot answer (left to the control plane when `None`), the second half of it
/// held for `hold`, and an empty page of changes after `at` (its head and its snapshot's
/// sequence) from then on. Its feed position at `at` comes back too.
fn another_history(
    d: &Deployment,
    history: HistoryId,
    snapshot: Option<Vec<u8>>,
    hold: Duration,
    at: u64,
) -> Result<(Vec<Tamper>, EdgeFeed)> {
    let secret = d.secrets.sync_secret()?;
    let chain = FeedChain::genesis(history);
    let field = |name: &str, value: String| (name.to_owned(), value);
    let mut tampers = vec![Tamper::Signed {
        prefix: "/v1/edge/changes".into(),
        secret: secret.clone(),
        fields: vec![
            field(sync::HISTORY_HEADER, history.to_string()),
            field(sync::HEAD_SEQ_HEADER, at.to_string()),
            field(sync::CHAIN_HEADER, chain.to_hex()),
        ],
        body: encode_changes(&[]),
        hold: Duration::ZERO,
    }];
    if let Some(body) = snapshot {
        tampers.push(Tamper::Signed {
            prefix: "/v1/edge/snapshot".into(),
            secret,
            fields: vec![
                field(sync::HISTORY_HEADER, history.to_string()),
                field(sync::SNAPSHOT_SEQ_HEADER, at.to_string()),
                field(sync::CHAIN_HEADER, chain.to_hex()),
            ],
            body,
            hold,
        });
    }
    let feed = EdgeFeed {
        history,
        after: at,
        chain,
    };
    Ok((tampers, feed))
}

/// Makes the proxy answer as a control plane of feed `history` whose table is `table`, and
/// waits until the edge's store and the isolate at `via` hold that table.
fn load_another_history(
    d: &Deployment,
    proxy: &FeedProxy,
    via: &str,
    history: HistoryId,
    table: &KeyTable,
) -> Result<()> {
    let generation = d.status_at(via)?["generation"].clone();
    let at = table.applied_seq();
    let snapshot = Some(encode_snapshot(table));
    let (tampers, _) = another_history(d, history, snapshot, Duration::ZERO, at)?;
    proxy.set_tampers(tampers);
    d.wait_for(PROPAGATION, "the other history's table", || {
        let status = d.status_at(via)?;
        Ok(status["generation"] != generation && status["applied_seq"] == json!(at))
    })?;
    Ok(())
}

/// Pushes one key at a time of `feed`'s history through `via` (the keys numbered from
/// `round`) until a push is answered 503 `table_reloading`: the store has set its table aside.
/// A push answered 200 before that moves `feed` on.
fn until_pushes_wait(d: &Deployment, feed: &mut EdgeFeed, via: &str, round: u64) -> Result<()> {
    let mut round = round;
    d.wait_for(PROPAGATION, "a push answered 503 table_reloading", || {
        round += 1;
        let batch = synthetic_keys(feed.next_seq(), 1, round);
        let push = feed.send_via(d, via, &batch)?;
        match push.status {
            200 => feed.moved_past(&batch),
            503 => ensure!(
                push.json()?["error"]["code"] == "table_reloading",
                "{push:?}"
            ),
            _ => anyhow::bail!("a push while the table is replaced: {push:?}"),
        }
        Ok(push.status == 503)
    })?;
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn neither_the_store_nor_an_isolate_replacing_a_large_table_holds_the_old_and_the_new_one()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    // The isolate's bound lowered from 32 MB, so that a copy of 300k keys is over it.
    let vars = [("REPLICA_KEEP_WHILE_REBUILDING_MB", "4")];
    let (d, proxy, real, _) = deployment_behind_a_proxy(&setup, 2, &vars)?;
    let via = second_isolate(&d)?;
    let isolate_memory = || -> Result<u64> {
        d.status_at(&via)?["wasm_memory_bytes"]
            .as_u64()
            .context("wasm_memory_bytes")
    };
    // A key in both large tables: admitted all along, whichever table decides.
    let both = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
    let digest = d.secrets.pepper_set()?.current().digest(&both);
    let both = both.expose_secret().to_owned();
    let first = with_key(table_of(KEYS, 0)?, digest)?;
    let second = with_key(table_of(KEYS + 10, 1)?, digest)?;
    let before = store_memory(&d, &via)?;
    let isolate_before = isolate_memory()?;
    // A large table, loaded as every replacement is: from a snapshot of another history.
    load_another_history(&d, &proxy, &via, HistoryId::from_bytes([0x5a; 16]), &first)?;
    ensure!(status_at(&via, &real)? == 401, "the first table's key");
    ensure!(status_at(&via, &both)? == 200, "the key in both tables");
    let loaded = store_memory(&d, &via)?;
    let isolate_loaded = isolate_memory()?;
    let grown = loaded.saturating_sub(before);
    let isolate_grown = isolate_loaded.saturating_sub(isolate_before);
    ensure!(
        grown > 8 << 20 && isolate_grown > 8 << 20,
        "the store's isolate grew by {grown} bytes for {KEYS} keys ({before} → {loaded}), the \
         serving one by {isolate_grown}"
    );
    // As many keys again (a few more, other ones), from a third history, while requests keep
    // coming to the isolate: it drops its copy and they wait for its new table (none may be
    // decided on the dropped, empty copy).
    let asking = std::sync::atomic::AtomicBool::new(true);
    let answers = std::thread::scope(|scope| -> Result<Vec<u16>> {
        let requests = scope.spawn(|| {
            let (mut answers, mut slowest) = (Vec::new(), Duration::ZERO);
            while asking.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = std::time::Instant::now();
                answers.push(status_at(&via, &both).unwrap_or(0));
                slowest = slowest.max(sent.elapsed());
            }
            eprintln!("the slowest request while the table was replaced: {slowest:?}");
            answers
        });
        let third = HistoryId::from_bytes([0x5b; 16]);
        let loading = load_another_history(&d, &proxy, &via, third, &second);
        asking.store(false, std::sync::atomic::Ordering::Relaxed);
        let answers = requests
            .join()
            .map_err(|_| anyhow::anyhow!("the request thread panicked"))?;
        loading.map(|()| answers)
    })?;
    let replaced = store_memory(&d, &via)?;
    let added = replaced.saturating_sub(loaded);
    let isolate_replaced = isolate_memory()?;
    let isolate_added = isolate_replaced.saturating_sub(isolate_loaded);
    eprintln!(
        "store isolate memory: {before} bytes, {loaded} with {KEYS} keys, {replaced} after \
         replacing them with {} others; the serving isolate's: {isolate_before}, \
         {isolate_loaded}, then {isolate_replaced}; {} requests meanwhile",
        KEYS + 10,
        answers.len()
    );
    ensure!(
        added < grown / 2,
        "replacing the table took {added} more bytes, loading it took {grown}: the old one \
         was held beside the new one"
    );
    ensure!(
        isolate_added < isolate_grown / 2,
        "the serving isolate took {isolate_added} more bytes for the new table, {isolate_grown} \
         for the first: it held its copy beside the new one"
    );
    ensure!(
        !answers.is_empty() && answers.iter().all(|&status| status == 200),
        "requests while the isolate replaced its table (the key is in both): {answers:?}"
    );
    ensure!(
        status_at(&via, &real)? == 401,
        "the first table's key, after"
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn while_a_new_table_is_on_its_way_isolates_get_the_stored_one_and_pushes_wait() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (d, proxy, real, mut old_feed) = deployment_behind_a_proxy(&setup, 3, &[])?;
    let urls = d.edges[0].options.isolate_urls();
    let (via, fresh) = (&urls[1], &urls[2]);
    // The snapshot of a second history arrives slowly: its second half 10 s after the rest.
    let at = old_feed.after + 5;
    let snapshot = Some(encode_snapshot(&table_of(at, 2)?));
    let second = HistoryId::from_bytes([0x5b; 16]);
    let hold = Duration::from_secs(10);
    let (tampers, mut second_feed) = another_history(&d, second, snapshot, hold, at)?;
    proxy.set_tampers(tampers);
    // Pushes of the old history are applied until the store starts decoding the snapshot and
    // sets its table aside; from then on they wait.
    until_pushes_wait(&d, &mut old_feed, via, 3)?;
    ensure!(
        status_at(fresh, &real)? == 200,
        "a fresh isolate is sent the stored table while the new one is on its way"
    );
    d.wait_for(PROPAGATION, "the new table in every isolate", || {
        Ok(status_at(fresh, &real)? == 401 && status_at(via, &real)? == 401)
    })?;
    let generation = d.status_at(via)?["generation"].clone();

    // The feed moves to a third history whose snapshot is refused half-way (it does not
    // decode): each reload fails after the store set its table aside, and it reads the table
    // back from storage.
    let asked = proxy.received("/v1/edge/snapshot");
    let third = HistoryId::from_bytes([0x5c; 16]);
    let garbage = Some(vec![0x42; 64 << 10]);
    let (tampers, _) = another_history(&d, third, garbage, Duration::ZERO, at + 1)?;
    proxy.set_tampers(tampers);
    d.wait_for(PROPAGATION, "two reloads that failed", || {
        Ok(proxy.received("/v1/edge/snapshot") >= asked + 2)
    })?;
    d.wait_for(PROPAGATION, "a push of the second history applied", || {
        second_feed.push_via(&d, via, &synthetic_keys(second_feed.next_seq(), 1, 99))?;
        Ok(true)
    })?;
    let status = d.status_at(via)?;
    ensure!(
        status["applied_seq"] == json!(at + 1) && status["generation"] == generation,
        "the second history's table, with the push, after failed reloads: {status}"
    );
    ensure!(status_at(fresh, &real)? == 401, "the old table's key");
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_burst_of_first_requests_at_a_fresh_isolate_builds_its_table_once() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (d, proxy, real, _) = deployment_behind_a_proxy(&setup, 3, &[])?;
    let urls = d.edges[0].options.isolate_urls();
    let (via, fresh) = (urls[1].clone(), urls[2].clone());
    let history = HistoryId::from_bytes([0x5d; 16]);
    load_another_history(&d, &proxy, &via, history, &table_of(KEYS, 0)?)?;
    let memory = |url: &str| -> Result<u64> {
        d.status_at(url)?["wasm_memory_bytes"]
            .as_u64()
            .context("wasm_memory_bytes")
    };
    // The second isolate built the table once, for one request at a time.
    let built_once = memory(&via)?;
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (url, key) = (fresh.clone(), real.clone());
            std::thread::spawn(move || status_at(&url, &key))
        })
        .collect();
    for request in requests {
        let status = request
            .join()
            .map_err(|_| anyhow::anyhow!("a request thread panicked"))??;
        // Decided on the new table (where the key is not), none refused as unavailable.
        ensure!(status == 401, "a request of the burst answered {status}");
    }
    let burst = memory(&fresh)?;
    eprintln!("isolate memory: {built_once} bytes after one build, {burst} after a burst of 8");
    ensure!(
        burst < built_once + built_once / 2,
        "eight first requests took {burst} bytes, one build {built_once}: each built its own table"
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_table_set_aside_that_storage_cannot_give_back_waits_for_the_next_snapshot() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (d, proxy, real, mut old_feed) = deployment_behind_a_proxy(&setup, 3, &[])?;
    let urls = d.edges[0].options.isolate_urls();
    let (via, fresh) = (&urls[1], &urls[2]);
    // Storage no longer reads back (the store's table, in memory, is untouched).
    corrupt_stored_snapshot(&d, 0, Damage::Whole)?;
    // The feed moves to another history whose snapshot is refused half-way: the store sets its
    // table aside, and reading it back fails. Pushes wait from then on.
    let asked = proxy.received("/v1/edge/snapshot");
    let second = HistoryId::from_bytes([0x5e; 16]);
    let at = old_feed.after + 3;
    let garbage = Some(vec![0x42; 64 << 10]);
    proxy.set_tampers(another_history(&d, second, garbage, Duration::ZERO, at)?.0);
    until_pushes_wait(&d, &mut old_feed, via, 10)?;
    // Later reloads fail the same way: the table stays set aside.
    d.wait_for(PROPAGATION, "two more reloads", || {
        Ok(proxy.received("/v1/edge/snapshot") >= asked + 3)
    })?;
    let push = old_feed.send_via(&d, via, &synthetic_keys(old_feed.next_seq(), 1, 99))?;
    ensure!(
        push.status == 503,
        "a push while the table is set aside: {push:?}"
    );
    // The isolate that has a copy keeps deciding on it; a fresh one has nothing to decide on.
    ensure!(status_at(via, &real)? == 200, "the isolate's copy");
    ensure!(
        status_at(fresh, &real)? == 503,
        "a fresh isolate, from corrupt storage"
    );

    // The next snapshot that decodes gives the store a table again, and storage with it.
    let snapshot = Some(encode_snapshot(&table_of(at, 3)?));
    let (tampers, mut second_feed) = another_history(&d, second, snapshot, Duration::ZERO, at)?;
    proxy.set_tampers(tampers);
    d.wait_for(PROPAGATION, "the new table in every isolate", || {
        Ok(status_at(via, &real)? == 401 && status_at(fresh, &real)? == 401)
    })?;
    second_feed.push_via(&d, via, &synthetic_keys(second_feed.next_seq(), 1, 100))?;
    ensure!(
        d.status_at(via)?["applied_seq"] == json!(at + 1),
        "the push after the reload"
    );
    Ok(())
}
