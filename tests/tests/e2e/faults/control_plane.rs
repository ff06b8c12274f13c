//! The control plane's faults: the process killed with SIGKILL under a stream of creates and
//! revokes (SQLite), and its PostgreSQL cut off under load (a TCP proxy in front of the
//! machine's server, brought down and up; the server itself is never touched).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Link, Setup, TcpProxy, TestDatabase, Topology};

use crate::load::{Load, edges_converge, nothing_acknowledged_is_lost};

/// How long the database stays cut off.
const OUTAGE: Duration = Duration::from_secs(6);

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_control_plane_killed_mid_stream_loses_nothing_it_acknowledged() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, 2, |_| {})?;
    let load = Load::on(&d);
    let (restarts, ledger) = load.run(4, Duration::ZERO, |load| {
        let mut restarts = Vec::new();
        for round in 1..=3 {
            load.until_acknowledged(&d, round * 40)?;
            d.kill_control_plane();
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            d.restart_control_plane()?;
            restarts.push(started.elapsed());
        }
        // The load goes on against the restarted process.
        let reached = load.acknowledged();
        load.until_acknowledged(&d, reached + 20)?;
        Ok(restarts)
    })?;
    let checked = nothing_acknowledged_is_lost(&d, &ledger)?;
    let converged = edges_converge(&d, &ledger, &checked)?;
    eprintln!(
        "kill -9 ×3 under load (SQLite): {} creates and {} revokes acknowledged, {} calls \
         unanswered, 0 lost; restarts answered in {restarts:?}; edges at head {} after {converged:?}",
        ledger.created.len(),
        ledger.revoked.len(),
        ledger.unanswered,
        checked.head,
    );
    ensure!(
        ledger.unanswered > 0,
        "no call was cut by the kills: nothing was tested"
    );
    ensure!(
        ledger.refused.is_empty(),
        "calls refused: {:?}",
        ledger.refused
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn postgres_cut_off_under_load_gives_503_then_recovers_by_itself_losing_nothing() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let Some(database) = TestDatabase::create()? else {
        return Ok(());
    };
    let proxy = TcpProxy::start(TestDatabase::server()?)?;
    let topology = Topology::postgres(1, &database.url_via(proxy.address), 1);
    let d = Deployment::start_with(&setup, &topology, |_| {})?;
    let load = Load::on(&d);
    let (figures, ledger) = load.run(3, Duration::from_millis(5), |load| {
        load.until_acknowledged(&d, 30)?;
        let before = load.acknowledged();
        proxy.set(Link::Down)?;
        let cut = Instant::now();
        // Meanwhile: a clear 503, and the edge still decides from its replica.
        let first_503 = d.wait_for(OUTAGE * 3, "a 503 while the database is cut off", || {
            let reply = d.api("GET", "/v1/keys?limit=1", None)?;
            let code = reply.json()?["error"]["code"].clone();
            ensure!(
                reply.status == 503 || reply.status == 200,
                "while cut off: {reply:?}"
            );
            Ok(reply.status == 503 && code == "unavailable")
        })?;
        let key = load.first_key().context("a key made before the cut")?;
        let reply = d.through_edge(0, "/x", Some(&key))?;
        ensure!(
            reply.status == 200,
            "the edge stopped admitting with the database cut off: {reply:?}"
        );
        std::thread::sleep(OUTAGE.saturating_sub(cut.elapsed()));
        let during = load.acknowledged() - before;
        proxy.set(Link::Up)?;
        let recovered = load.until_acknowledged(&d, load.acknowledged() + 1)?;
        let reached = load.acknowledged();
        load.until_acknowledged(&d, reached + 30)?;
        Ok((first_503, during, recovered))
    })?;
    let (first_503, during, recovered) = figures;
    let checked = nothing_acknowledged_is_lost(&d, &ledger)?;
    let converged = edges_converge(&d, &ledger, &checked)?;
    let unavailable = ledger
        .refused
        .get(&(503, "unavailable".to_owned()))
        .copied()
        .unwrap_or(0);
    eprintln!(
        "PostgreSQL cut off {OUTAGE:?} under load: {} creates and {} revokes acknowledged \
         ({during} of them while it was cut off), {unavailable} answered 503 \
         unavailable, {} unanswered, 0 lost; first 503 after {first_503:?}, first success \
         {recovered:?} after the link came back; edge at head {} after {converged:?}",
        ledger.created.len(),
        ledger.revoked.len(),
        ledger.unanswered,
        checked.head,
    );
    ensure!(
        unavailable > 0,
        "no call met the outage: nothing was tested"
    );
    let other: Vec<_> = ledger
        .refused
        .iter()
        .filter(|((status, code), _)| (*status, code.as_str()) != (503, "unavailable"))
        .collect();
    ensure!(
        other.is_empty(),
        "other refusals than 503 unavailable: {other:?}"
    );
    ensure!(
        ledger.unanswered == 0,
        "{} calls got no answer: a cut database must not hang or drop the API",
        ledger.unanswered
    );
    drop(d);
    drop(database);
    Ok(())
}
