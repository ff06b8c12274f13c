//! What one claim of the webhook delivery worker costs while an endpoint slow to answer has a
//! due backlog it has no places for: its `ENDPOINT_IN_FLIGHT` (32) deliveries are in flight
//! and `--backlog N` more are due, older than anything else; another endpoint has one due
//! delivery. Each claim takes that one delivery (it is then made claimable again, outside the
//! timing). Baseline, in the same run: the same claims with the slow endpoint's 32 in flight
//! and nothing else due. The ratio is what the backlog adds to every claim (on SQLite the
//! claim holds the database's one writer).
//!
//! `cargo bench -p keyplane-control-plane --bench webhook_claim [-- --backlog N --claims N --backend sqlite|postgres|both]`

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::store::webhooks::ENDPOINT_IN_FLIGHT;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::WebhookId;
use serde_json::json;

struct Options {
    backlogs: Vec<usize>,
    claims: usize,
    backends: Vec<Backend>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        backlogs: vec![10_000, 100_000],
        claims: 41,
        backends: vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backlog" => options.backlogs = vec![value()?.parse()?],
            "--claims" => options.claims = value()?.parse()?,
            "--backend" => options.backends = support::backends(&value()?)?,
            _ => {}
        }
    }
    Ok(options)
}

/// An endpoint of the first organization wanting `event`; its id.
async fn endpoint(app: &axum::Router, admin: &str, event: &str) -> anyhow::Result<WebhookId> {
    let made = support::call(
        app,
        "POST",
        "/v1/webhooks",
        admin,
        json!({"url": "http://127.0.0.1:9/hook", "events": [event]}),
    )
    .await?;
    made["webhook"]["id"]
        .as_str()
        .context("an endpoint id")?
        .parse()
        .map_err(|_| anyhow::anyhow!("an endpoint id"))
}

/// The time now.
fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(since_epoch.as_millis() as i64)
}

/// A random 16-byte id in `backend`'s SQL.
fn random_id(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "randomblob(16)",
        Backend::Postgres => "decode(replace(gen_random_uuid()::text, '-', ''), 'hex')",
    }
}

/// Writes `count` pending deliveries of `endpoint` due from `first_due` on (one millisecond
/// apart), held until `claimed_until` (0: not held), for events that need not exist (a
/// claim reads an event only for the deliveries it takes).
async fn seed(
    pool: &sqlx::AnyPool,
    backend: Backend,
    endpoint: WebhookId,
    count: usize,
    first_due: Timestamp,
    claimed_until: i64,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, \
           next_attempt_at, claimed_until, created_at) \
         SELECT $2, {}, 'pending', 0, $3 + i, $4, $3 + i FROM n",
        random_id(backend)
    )))
    .bind(count as i64)
    .bind(endpoint.to_bytes().to_vec())
    .bind(first_due.as_millis())
    .bind(claimed_until)
    .execute(pool)
    .await?;
    Ok(())
}

/// The median time of `claims` claims, each taking the one due delivery of `other`.
async fn time_claims(
    state: &keyplane_control_plane::state::AppState,
    pool: &sqlx::AnyPool,
    other: WebhookId,
    claims: usize,
) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(claims);
    for _ in 0..claims {
        let now = now();
        let started = Instant::now();
        let claimed = state
            .store
            .claim_deliveries(now, Timestamp(now.as_millis() + 60_000), 32)
            .await?;
        times.push(started.elapsed());
        ensure!(
            claimed.len() == 1 && claimed[0].endpoint.id == other,
            "a claim took {} deliveries, not the other endpoint's one",
            claimed.len()
        );
        sqlx::query("UPDATE webhook_deliveries SET claimed_until = 0 WHERE endpoint_id = $1")
            .bind(other.to_bytes().to_vec())
            .execute(pool)
            .await?;
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The median claim with each backlog, the first with none (the baseline).
async fn run_backend(
    backend: Backend,
    backlogs: &[usize],
    claims: usize,
) -> anyhow::Result<Vec<(usize, Duration)>> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_claim").await?;
    let config = support::config(dir.path(), &database_url);
    let (application, first) = support::first_start(&config).await?;
    let admin = first.admin_key.expose_secret().to_owned();
    let state = application.state().clone();
    let app = keyplane_control_plane::app(state.clone());
    let slow = endpoint(&app, &admin, "key.updated").await?;
    let other = endpoint(&app, &admin, "key.created").await?;
    // The other endpoint's one delivery: a real event, as the claim reads it.
    support::call(
        &app,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "bench", "environment": "live"}),
    )
    .await?;
    let pool = support::raw_pool(&database_url).await?;
    let day_ago = Timestamp(now().as_millis() - 86_400_000);
    let in_flight_until = now().as_millis() + 86_400_000;
    let share = ENDPOINT_IN_FLIGHT as usize;
    seed(&pool, backend, slow, share, day_ago, in_flight_until).await?;
    let mut figures = vec![(0, time_claims(&state, &pool, other, claims).await?)];
    let mut seeded = 0;
    for &backlog in backlogs {
        let due_from = Timestamp(day_ago.as_millis() + (share + seeded) as i64);
        seed(&pool, backend, slow, backlog - seeded, due_from, 0).await?;
        seeded = backlog;
        figures.push((backlog, time_claims(&state, &pool, other, claims).await?));
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut table = String::from(
        "| backend | slow endpoint's due backlog | claim (median) | ÷ no backlog |\n|---|---:|---:|---:|\n",
    );
    for &backend in &options.backends {
        let figures = run_backend(backend, &options.backlogs, options.claims).await?;
        let baseline = figures[0].1.as_secs_f64();
        for (backlog, time) in figures {
            table.push_str(&format!(
                "| {backend:?} | {backlog} | {:.2} ms | {:.1} |\n",
                time.as_secs_f64() * 1000.0,
                time.as_secs_f64() / baseline
            ));
        }
    }
    println!(
        "\n{} claims at each size, each taking one delivery of another endpoint\n\n{table}",
        options.claims
    );
    Ok(())
}
