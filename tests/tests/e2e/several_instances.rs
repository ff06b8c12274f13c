//! Two `keyplane serve` instances on one PostgreSQL database and three edges, as one service:
//! revocations made through either instance reach every edge, every instance pushes to every
//! edge (so an edge gets most changes twice, which it must shrug off), and a concurrent load
//! through both, with one of them killed and restarted in the middle, loses nothing.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Setup, TestDatabase, Topology};
use serde_json::json;

use crate::load::{Load, edges_converge, nothing_acknowledged_is_lost};

/// A bound for a change to reach an edge, on a loaded machine.
const PROPAGATION: Duration = Duration::from_secs(15);
const INSTANCES: usize = 2;
const EDGES: usize = 3;

fn until_status(d: &Deployment, edge: usize, key: &str, status: u16) -> Result<()> {
    d.wait_for(
        PROPAGATION,
        &format!("edge {edge} answering {status}"),
        || Ok(d.through_edge(edge, "/x", Some(key))?.status == status),
    )?;
    Ok(())
}

/// The pushes instance `url` made that an edge acknowledged, from its `/metrics`.
fn acked_pushes(url: &str) -> Result<u64> {
    let metrics = keyplane_tests::get(&format!("{url}/metrics"), &[])?;
    ensure!(metrics.status == 200, "{metrics:?}");
    metrics
        .body
        .lines()
        .find(|line| line.contains("edge_pushes_total{") && line.contains("outcome=\"acked\""))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .with_context(|| format!("no acked pushes counted: {}", metrics.body))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn two_instances_on_postgres_serve_three_edges_as_one_service() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let Some(database) = TestDatabase::create()? else {
        return Ok(());
    };
    let topology = Topology::postgres(INSTANCES, &database.url(), EDGES);
    let mut d = Deployment::start_with(&setup, &topology, |_| {})?;

    // Keys made and revoked through the instances in turn.
    let keys = (0..10)
        .map(|n| {
            let body = json!({"name": format!("turn-{n}"), "environment": "live"});
            d.create_key_via(n % INSTANCES, body)
        })
        .collect::<Result<Vec<_>>>()?;
    for edge in 0..EDGES {
        for (_, key) in &keys {
            until_status(&d, edge, key, 200)?;
        }
    }
    let mut propagation = Vec::new();
    for (n, (id, key)) in keys.iter().enumerate() {
        let via = n % INSTANCES;
        let path = format!("/v1/keys/{id}/revoke");
        let reply = d.api_via(via, "POST", &path, Some(json!({"reason": "compromised"})))?;
        ensure!(
            reply.status == 200,
            "revoking {id} through instance {via}: {reply:?}"
        );
        let returned = Instant::now();
        for edge in 0..EDGES {
            until_status(&d, edge, key, 401)?;
        }
        propagation.push(returned.elapsed());
    }

    // A load through both; instance 1 is killed and started again in the middle of it.
    let load = Load::on(&d);
    let (restart, ledger) = load.run(4, Duration::ZERO, |load| {
        load.until_acknowledged(&d, 40)?;
        d.kill_instance(1)?;
        let reached = load.acknowledged();
        // Instance 0 goes on serving alone.
        load.until_acknowledged(&d, reached + 20)?;
        let started = Instant::now();
        d.restart_instance(1)?;
        let restart = started.elapsed();
        load.until_acknowledged(&d, load.acknowledged() + 40)?;
        Ok(restart)
    })?;
    let checked = nothing_acknowledged_is_lost(&d, &ledger)?;
    let converged = edges_converge(&d, &ledger, &checked)?;

    // Both instances serve the same feed and the same keys.
    for instance in 0..INSTANCES {
        let reply = d.api_via(instance, "GET", &format!("/v1/keys/{}", keys[0].0), None)?;
        ensure!(
            reply.status == 200 && reply.json()?["status"] == "revoked",
            "instance {instance}: {reply:?}"
        );
    }
    // Both instances pushed to the edges (so each edge took most changes twice), and every
    // edge took them without a push failing for it.
    for instance in 0..INSTANCES {
        let acked = acked_pushes(&d.instance_url(instance))?;
        ensure!(acked > 0, "instance {instance} pushed nothing");
    }
    let edges = d.api("GET", "/v1/operator/edges", None)?.json()?;
    for edge in edges["data"].as_array().into_iter().flatten() {
        ensure!(
            edge["acked_seq"].as_u64() >= Some(checked.head) && edge["last_error"].is_null(),
            "an edge after the load: {edge}"
        );
    }
    propagation.sort();
    eprintln!(
        "{INSTANCES} instances, {EDGES} edges: revocations through alternating instances reached \
         every edge in {propagation:?}; load: {} creates and {} revokes acknowledged, {} \
         unanswered (instance 1 killed), 0 lost; instance 1 restarted in {restart:?}; edges at \
         head {} after {converged:?}",
        ledger.created.len(),
        ledger.revoked.len(),
        ledger.unanswered,
        checked.head,
    );
    ensure!(
        ledger.refused.is_empty(),
        "calls refused: {:?}",
        ledger.refused
    );
    drop(d);
    drop(database);
    Ok(())
}
