//! The edges' faults: an edge killed with SIGKILL in the middle of a burst of revocations, and
//! the network to an edge blackholed (a proxy in front of it that accepts and never answers).

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Link, Setup, TcpProxy};
use serde_json::{Value, json};

/// How long the control plane's pusher waits for an edge (`replication::pusher::PUSH_TIMEOUT`).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// A bound for a change to reach an edge, on a loaded machine.
const PROPAGATION: Duration = Duration::from_secs(15);

fn live_keys(d: &Deployment, count: usize) -> Result<Vec<(String, String)>> {
    (0..count)
        .map(|n| d.create_key(json!({"name": format!("burst-{n}"), "environment": "live"})))
        .collect()
}

fn revoke(d: &Deployment, id: &str) -> Result<()> {
    let path = format!("/v1/keys/{id}/revoke");
    let reply = d.api("POST", &path, Some(json!({"reason": "compromised"})))?;
    ensure!(reply.status == 200, "revoking {id}: {reply:?}");
    Ok(())
}

fn until_status(d: &Deployment, edge: usize, key: &str, status: u16) -> Result<Duration> {
    d.wait_for(
        PROPAGATION,
        &format!("edge {edge} answering {status}"),
        || Ok(d.through_edge(edge, "/x", Some(key))?.status == status),
    )
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_edge_killed_during_a_burst_of_revocations_first_answers_401_for_each() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, 2, |_| {})?;
    let keys = live_keys(&d, 40)?;
    for (_, key) in &keys {
        until_status(&d, 0, key, 200)?;
    }
    let (to_revoke, to_keep) = keys.split_at(30);
    // The burst runs on its own thread; edge 0 is killed a third of the way in and started
    // again once it is over.
    let revoked_before_kill = std::thread::scope(|scope| -> Result<usize> {
        let (sender, progress) = std::sync::mpsc::channel();
        let deployment = &d;
        let burst = scope.spawn(move || -> Result<()> {
            for (id, _) in to_revoke {
                revoke(deployment, id)?;
                let _ = sender.send(());
            }
            Ok(())
        });
        for _ in 0..10 {
            progress.recv().context("the burst ended early")?;
        }
        d.signal_edge(0, "KILL");
        burst
            .join()
            .map_err(|_| anyhow::anyhow!("the burst panicked"))??;
        Ok(10)
    })?;
    d.kill_edge(0);
    d.launch_edge(0)?;
    // The first answer for each revoked key, with no waiting: 401.
    for (id, key) in to_revoke {
        let reply = d.through_edge(0, "/x", Some(key))?;
        ensure!(
            reply.status == 401,
            "the restarted edge admitted {id}, revoked before or during its crash: {reply:?}"
        );
    }
    for (id, key) in to_keep {
        let reply = d.through_edge(0, "/x", Some(key))?;
        ensure!(
            reply.status == 200,
            "the restarted edge refuses live key {id}: {reply:?}"
        );
    }
    for (_, key) in to_revoke {
        until_status(&d, 1, key, 401)?;
    }
    eprintln!(
        "edge killed after {revoked_before_kill} of {} revocations: its first answer for each \
         of the {} after restart was 401",
        to_revoke.len(),
        to_revoke.len()
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_blackholed_edge_delays_no_other_and_heals_by_pulling() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    // Edge 0 registers the proxy's address as its own, so every push to it crosses the proxy;
    // its own pulls and the test's requests go to it directly.
    let proxy = OnceCell::new();
    let d = Deployment::start(&setup, 3, |options| {
        if options.name != "edge-0" {
            return;
        }
        let edge: SocketAddr = ([127, 0, 0, 1], options.port).into();
        match TcpProxy::start(edge) {
            Ok(started) => {
                options.var("EDGE_URL", &format!("http://{}", started.address));
                options.pull_interval_secs = 2;
                let _ = proxy.set(started);
            }
            Err(error) => eprintln!("edge proxy: {error:#}"),
        }
    })?;
    let proxy = proxy.get().context("the edge proxy started")?;
    let keys = live_keys(&d, 3)?;
    for edge in 0..3 {
        for (_, key) in &keys {
            until_status(&d, edge, key, 200)?;
        }
    }
    proxy.set(Link::Blackhole)?;
    let held_before = proxy.accepted();
    let mut others = Vec::new();
    let mut healed = Vec::new();
    for (id, key) in &keys {
        let revoked = Instant::now();
        revoke(&d, id)?;
        for edge in 1..3 {
            until_status(&d, edge, key, 401)?;
            others.push(revoked.elapsed());
        }
        until_status(&d, 0, key, 401)?;
        healed.push(revoked.elapsed());
    }
    let pushes_held = proxy.accepted() - held_before;
    let slowest_other = others.iter().max().copied().unwrap_or_default();
    eprintln!(
        "edge 0 blackholed: {pushes_held} pushes held; edges 1-2 refused each revoked key \
         after {others:?} (slowest {slowest_other:?}); edge 0 by its pull after {healed:?}"
    );
    ensure!(
        pushes_held > 0,
        "no push went into the blackhole: nothing was tested"
    );
    ensure!(
        slowest_other < PUSH_TIMEOUT,
        "the other edges waited for the blackholed one: {slowest_other:?}"
    );
    // The push held in the blackhole ends at the pusher's timeout, recorded for edge 0.
    let timed_out = |edge: &Value| {
        edge["name"] == "edge-0"
            && edge["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("no answer within"))
    };
    d.wait_for(PROPAGATION, "edge 0's push recorded as timed out", || {
        let edges = d.api("GET", "/v1/operator/edges", None)?.json()?;
        Ok(edges["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(timed_out))
    })?;
    Ok(())
}
