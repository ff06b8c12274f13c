//! Edges are told apart, and follow the feed they are given: a push meant for another edge is
//! refused (and shows as that edge failing), an answer that is not the control plane's for
//! this very request changes nothing, and a control plane on another database (re-created, or
//! restored behind or past what the edge holds) makes the edge — its store and every isolate —
//! drop what it had.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_shared::table::codec::{decode_changes, encode_changes, encode_snapshot};
use keyplane_shared::{
    ApiKey, Change, ChangeOp, Environment, KeyId, KeyPrefix, KeyStatus, KeyTable, OrgId, ScopeSet,
    TableEntry,
};
use keyplane_tests::{Deployment, FeedProxy, Setup, Tamper, signed};
use serde_json::{Value, json};

/// The bound for a change to arrive on a loaded machine (the figure is benchmarked).
const PROPAGATION: Duration = Duration::from_secs(15);
/// The edges' pull interval in these tests.
const PULL_INTERVAL_SECS: u32 = 2;

fn status(d: &Deployment, edge: usize, key: &str) -> Result<u16> {
    Ok(d.through_edge(edge, "/x", Some(key))?.status)
}

fn until_status(d: &Deployment, edge: usize, key: &str, wanted: u16) -> Result<()> {
    d.wait_for(
        PROPAGATION,
        &format!("edge {edge} answering {wanted}"),
        || Ok(status(d, edge, key)? == wanted),
    )?;
    Ok(())
}

fn live_key(d: &Deployment, name: &str) -> Result<(String, String)> {
    d.create_key(json!({"name": name, "environment": "live", "scopes": []}))
}

fn revoke(d: &Deployment, id: &str) -> Result<()> {
    let reply = d.api(
        "POST",
        &format!("/v1/keys/{id}/revoke"),
        Some(json!({"reason": "compromised"})),
    )?;
    ensure!(reply.status == 200, "revoke: {reply:?}");
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_push_meant_for_another_edge_is_refused_and_that_edge_shows_failing() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    // Two edges given one URL (an easy mistake): the second registers edge-0's URL as its own.
    let first_url = RefCell::new(None::<String>);
    let d = Deployment::start(&setup, 2, |options| {
        options.pull_interval_secs = PULL_INTERVAL_SECS;
        match first_url.borrow().clone() {
            None => {}
            Some(url) => {
                options.var("EDGE_URL", &url);
            }
        }
        first_url.borrow_mut().get_or_insert_with(|| options.url());
    })?;
    let (_, key) = live_key(&d, "both")?;
    // Edge-0 gets it by push; edge-1 only by its own pulls (its pushes land at edge-0).
    until_status(&d, 0, &key, 200)?;
    until_status(&d, 1, &key, 200)?;
    let listed = d.wait_for(PROPAGATION, "edge-1 shown failing", || {
        let text = setup.keyplane(&["edges", "list", "--data-dir"], d.control_plane.data_dir())?;
        Ok(text
            .lines()
            .any(|line| line.starts_with("edge-1\t") && line.contains("misdirected_push")))
    });
    let text = setup.keyplane(&["edges", "list", "--data-dir"], d.control_plane.data_dir())?;
    listed.with_context(|| text.clone())?;
    // Edge-0 is not disturbed: pushed to the head, no push error.
    let edge0: Vec<&str> = text
        .lines()
        .find(|line| line.starts_with("edge-0\t"))
        .context("edge-0 listed")?
        .split('\t')
        .collect();
    ensure!(
        edge0.get(4) == Some(&"0") && edge0.get(6) == Some(&"-"),
        "edge-0 behind or failing: {edge0:?}"
    );
    Ok(())
}

/// An edge whose feed reads go through a proxy that tampers with them, and that no push
/// reaches (so what it learns, it learns by pulling). Returns the deployment and the proxy.
fn tampered_deployment(setup: &Setup) -> Result<(Deployment, FeedProxy)> {
    let proxy = RefCell::new(None);
    let d = Deployment::start(setup, 1, |options| {
        match FeedProxy::in_front_of(options) {
            Ok(started) => *proxy.borrow_mut() = Some(started),
            Err(error) => eprintln!("feed proxy: {error:#}"),
        }
        options.pull_interval_secs = PULL_INTERVAL_SECS;
    })?;
    let proxy = proxy.into_inner().context("the feed proxy started")?;
    Ok((d, proxy))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_tampered_or_replayed_feed_answer_changes_nothing() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (d, proxy) = tampered_deployment(&setup)?;
    let (id, key) = live_key(&d, "victim")?;
    until_status(&d, 0, &key, 200)?;
    let seq = d.edge_status(0)?["applied_seq"]
        .as_u64()
        .context("applied_seq")?;
    // The key's creation, as the feed serves it (recorded by someone on the path).
    let recorded = signed(
        &d.secrets,
        "GET",
        &d.control_plane.url,
        &format!("/v1/edge/changes?after={}", seq - 1),
        Vec::new(),
    )?;
    let creation = decode_changes(&recorded.bytes)?
        .pop()
        .context("the creation change")?;
    revoke(&d, &id)?;
    until_status(&d, 0, &key, 401)?;
    let revoked_at = d.edge_status(0)?;
    let applied = revoked_at["applied_seq"].as_u64().context("applied_seq")?;

    // 1. Every page of changes the edge pulls now carries the key's creation again, renumbered
    // as the next change (the checksum is no secret): the signature no longer matches.
    let mut replayed = creation.clone();
    replayed.seq = applied + 1;
    proxy.set_tampers(vec![Tamper::ReplaceBody {
        prefix: "/v1/edge/changes".into(),
        body: encode_changes(&[replayed]),
    }]);
    let tampered_before = proxy.tampered();
    d.wait_for(PROPAGATION, "two tampered pulls", || {
        Ok(proxy.tampered() >= tampered_before + 2)
    })?;
    ensure!(status(&d, 0, &key)? == 401, "the revoked key came back");

    // 2. A real, signed "you are ahead" (409) recorded earlier, replayed to every pull: it
    // answers another request, so the edge keeps its table. Had it been taken, the edge would
    // have reloaded the (untampered) snapshot: a new generation.
    let ahead = signed(
        &d.secrets,
        "GET",
        &d.control_plane.url,
        &format!("/v1/edge/changes?after={}", applied + 1000),
        Vec::new(),
    )?;
    ensure!(ahead.status == 409, "{ahead:?}");
    proxy.set_tampers(vec![Tamper::Answer {
        prefix: "/v1/edge/changes".into(),
        status: ahead.status,
        headers: ahead.headers().to_vec(),
        body: ahead.bytes.clone(),
    }]);
    let tampered_before = proxy.tampered();
    d.wait_for(PROPAGATION, "two replayed refusals", || {
        Ok(proxy.tampered() >= tampered_before + 2)
    })?;
    let after = d.edge_status(0)?;
    ensure!(
        after["generation"] == revoked_at["generation"] && after["applied_seq"] == applied,
        "the edge acted on a replayed answer: {revoked_at} then {after}"
    );
    ensure!(status(&d, 0, &key)? == 401);

    // Untampered again, it follows the feed (by pulling: no push reaches it).
    proxy.set_tampers(Vec::new());
    let (_, fresh) = live_key(&d, "after")?;
    until_status(&d, 0, &fresh, 200)?;
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_forged_snapshot_is_not_loaded_whatever_its_bytes() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let (mut d, proxy) = tampered_deployment(&setup)?;
    let (_, real) = live_key(&d, "real")?;
    until_status(&d, 0, &real, 200)?;
    let seq = d.edge_status(0)?["applied_seq"]
        .as_u64()
        .context("applied_seq")?;
    // A well-formed snapshot at the right sequence holding a key of the forger's own, sent
    // under the control plane's real signature (which covers another body). The edge streams
    // a snapshot's body into its decoder as it arrives: nothing of it may be used unless the
    // signature holds over the whole of it.
    let peppers = d.secrets.pepper_set()?;
    let forged = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
    let mut table = KeyTable::new();
    for n in 1..=seq {
        table
            .apply(&Change {
                seq: n,
                op: ChangeOp::Upsert(TableEntry {
                    digest: peppers.current().digest(&forged),
                    key_id: KeyId::generate()?,
                    org_id: OrgId::from_bytes([9; 16]),
                    env: Environment::Live,
                    status: KeyStatus::Active,
                    expires_at: None,
                    scopes: ScopeSet::empty(),
                    rate_limit: None,
                }),
            })
            .map_err(|gap| anyhow::anyhow!("{gap}"))?;
    }
    proxy.set_tampers(vec![Tamper::ReplaceBody {
        prefix: "/v1/edge/snapshot".into(),
        body: encode_snapshot(&table),
    }]);
    // The edge starts again on empty storage, so its first pull asks for a snapshot.
    d.stop_edge(0);
    d.edges[0].options.persist_dir = Some(keyplane_tests::fresh_dir("edge-0-again")?);
    let tampered_before = proxy.tampered();
    d.launch_edge(0)?;
    // Its first request starts the store, whose first pull is sent the forgery; the next
    // pulls too, until it stops.
    ensure!(
        status(&d, 0, forged.expose_secret())? != 200,
        "the forged key was admitted"
    );
    d.wait_for(PROPAGATION, "two forged snapshots", || {
        Ok(proxy.tampered() >= tampered_before + 2)
    })?;
    ensure!(
        status(&d, 0, forged.expose_secret())? != 200,
        "the forged key was admitted after another pull"
    );
    // Untampered, the next pull loads the real snapshot.
    proxy.set_tampers(Vec::new());
    until_status(&d, 0, &real, 200)?;
    ensure!(status(&d, 0, forged.expose_secret())? == 401);
    Ok(())
}

/// A deployment whose edge pulls often (its pushes come only from a control plane that knows
/// it: after a database change, from its next pull on).
fn pulling_deployment(setup: &Setup) -> Result<Deployment> {
    Deployment::start(setup, 1, |options| {
        options.pull_interval_secs = PULL_INTERVAL_SECS;
        if let Err(error) = options.with_isolates(2) {
            eprintln!("a second isolate: {error:#}");
        }
    })
}

fn generation(d: &Deployment) -> Result<Value> {
    Ok(d.edge_status(0)?["generation"].clone())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_control_plane_on_a_new_database_behind_the_edge_replaces_its_table_in_every_isolate()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = pulling_deployment(&setup)?;
    let mut old_keys = Vec::new();
    for n in 0..3 {
        old_keys.push(live_key(&d, &format!("old{n}"))?.1);
    }
    let urls = d.edges[0].options.isolate_urls();
    ensure!(urls.len() == 2, "two isolates: {urls:?}");
    for url in &urls {
        for key in &old_keys {
            let reply = keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", key)])?;
            ensure!(reply.status == 200, "{url}: {reply:?}");
        }
    }
    let before = generation(&d)?;
    // The new database's feed is at 1 (its first organization's admin key), behind the edge.
    d.restart_control_plane_on_a_new_database()?;
    let (_, new_key) = live_key(&d, "new")?;
    for url in &urls {
        d.wait_for(
            PROPAGATION,
            &format!("{url} following the new database"),
            || {
                let old = keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", &old_keys[0])])?;
                let new = keyplane_tests::get(&format!("{url}/x"), &[("x-api-key", &new_key)])?;
                Ok(old.status == 401 && new.status == 200)
            },
        )?;
    }
    ensure!(generation(&d)? != before, "the store reloaded");
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_control_plane_on_a_new_database_past_the_edge_replaces_its_table() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = pulling_deployment(&setup)?;
    let (_, old_key) = live_key(&d, "old")?;
    until_status(&d, 0, &old_key, 200)?;
    let edge_seq = d.edge_status(0)?["applied_seq"]
        .as_u64()
        .context("applied_seq")?;
    // The edge is down while the control plane moves to a new database that passes the
    // edge's sequence: the same numbers, other changes.
    d.stop_edge(0);
    d.restart_control_plane_on_a_new_database()?;
    let mut new_keys = Vec::new();
    loop {
        let head = signed(
            &d.secrets,
            "GET",
            &d.control_plane.url,
            "/v1/edge/changes?after=0&limit=1",
            Vec::new(),
        )?;
        let head: u64 = head
            .header("x-keyplane-head-seq")
            .context("head")?
            .parse()?;
        if head > edge_seq {
            break;
        }
        new_keys.push(live_key(&d, &format!("new{head}"))?.1);
    }
    d.start_edge(0)?;
    ensure!(
        status(&d, 0, &old_key)? == 401,
        "a key of the old database still works"
    );
    for key in &new_keys {
        until_status(&d, 0, key, 200)?;
    }
    Ok(())
}
