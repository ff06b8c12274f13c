//! Throughput of the webhook delivery worker: `--events N` key changes (each announcing one
//! `key.updated`) wait in the outbox for one endpoint, a local receiver answering 204; the
//! worker's loop (claiming into its free places, sending, recording attempts as they end) runs
//! until every attempt is recorded, with at most `ENDPOINT_IN_FLIGHT` (32) of the endpoint's
//! in flight. Baseline, in the same run: the same number of POSTs of an event-sized body by the
//! same HTTP client to the same receiver, as many at once as a claim takes at most
//! ([`delivery::BATCH`], 32) — what the machine and the receiver allow without an outbox.
//!
//! `cargo bench -p keyplane-control-plane --bench webhook_delivery [-- --events N --backend sqlite|postgres|both]`

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use axum::http::StatusCode;
use futures_util::future::join_all;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::webhooks::delivery;
use serde_json::json;

struct Options {
    events: usize,
    backends: Vec<Backend>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 2000,
        backends: vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => options.events = value()?.parse()?,
            "--backend" => options.backends = support::backends(&value()?)?,
            _ => {}
        }
    }
    Ok(options)
}

/// A receiver on 127.0.0.1 answering 204 and counting; its URL.
async fn receiver(count: Arc<AtomicUsize>) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

struct Figures {
    worker_per_second: f64,
    raw_per_second: f64,
}

async fn run_backend(backend: Backend, events: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_hooks").await?;
    let config = support::config(dir.path(), &database_url);
    let (application, first) = support::first_start(&config).await?;
    let admin = first.admin_key.expose_secret().to_owned();
    let state = application.state().clone();
    let app = keyplane_control_plane::app(state.clone());
    let received = Arc::new(AtomicUsize::new(0));
    let url = receiver(received.clone()).await?;
    support::call(
        &app,
        "POST",
        "/v1/webhooks",
        &admin,
        json!({"url": url, "events": ["key.updated"]}),
    )
    .await?;
    let made = support::call(
        &app,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "n0", "environment": "live"}),
    )
    .await?;
    let id = made["record"]["id"]
        .as_str()
        .context("a key id")?
        .to_owned();
    let started = Instant::now();
    for n in 1..=events {
        support::call(
            &app,
            "PATCH",
            &format!("/v1/keys/{id}"),
            &admin,
            json!({"name": format!("n{n}")}),
        )
        .await?;
    }
    eprintln!(
        "{backend:?}: {events} events written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let client = delivery::client(true)?;
    let started = Instant::now();
    let deliverer = delivery::Deliverer::new(state.clone(), client.clone());
    let mut recorded = deliverer.recorded();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = delivery::run(deliverer, stopped);
    // Every attempt recorded (or not: counted, and failing the check below), within minutes.
    let tally = *tokio::time::timeout(
        std::time::Duration::from_secs(300),
        recorded.wait_for(|tally| tally.attempted + tally.unrecorded >= events),
    )
    .await
    .context("the worker did not record every attempt within 5 minutes")??;
    let worker = started.elapsed();
    stop.send(true)?;
    running.await?;
    let delivered = tally.delivered;
    ensure!(delivered == events, "{delivered} of {events} delivered");
    ensure!(
        received.load(Ordering::Relaxed) == events,
        "the receiver got {} of {events}",
        received.load(Ordering::Relaxed)
    );

    let pool = support::raw_pool(&database_url).await?;
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts")
        .fetch_one(&pool)
        .await?;
    ensure!(
        recorded == events as i64,
        "{recorded} attempts recorded, not {events}"
    );

    // The same POSTs without the outbox, as many at once as a worker batch.
    let body = json!({"type": "key.updated", "timestamp": "2026-12-04T00:00:00Z",
        "data": {"key_id": id, "details": {"before": {"name": "n0"}, "after": {"name": "n1"}}}})
    .to_string();
    let started = Instant::now();
    let batch = delivery::BATCH as usize;
    for chunk_start in (0..events).step_by(batch) {
        let count = batch.min(events - chunk_start);
        let sends = (0..count).map(|_| {
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", "evt_bench")
                .body(body.clone())
                .send()
        });
        for sent in join_all(sends).await {
            ensure!(
                sent?.status() == StatusCode::NO_CONTENT,
                "the receiver refused"
            );
        }
    }
    let raw = started.elapsed();
    Ok(Figures {
        worker_per_second: events as f64 / worker.as_secs_f64(),
        raw_per_second: events as f64 / raw.as_secs_f64(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut table = String::from(
        "| backend | worker deliveries/s | plain POSTs/s (same client, 32 at once) | ratio |\n|---|---:|---:|---:|\n",
    );
    for &backend in &options.backends {
        let figures = run_backend(backend, options.events).await?;
        table.push_str(&format!(
            "| {backend:?} | {:.0} | {:.0} | {:.2} |\n",
            figures.worker_per_second,
            figures.raw_per_second,
            figures.worker_per_second / figures.raw_per_second
        ));
    }
    println!("\n{} events to one endpoint\n\n{table}", options.events);
    Ok(())
}
