//! Usage ingestion throughput over HTTP: events stored per second through
//! `POST /v1/edge/usage` in signed batches of 1, 100 and 1000 events, on SQLite and on
//! PostgreSQL. The batch of 1 is the baseline: the table gives each size's throughput as a
//! multiple of it, measured in the same run.
//!
//! `cargo bench -p keyplane-control-plane --bench usage_ingest [-- --seconds S --keys N --backend sqlite|postgres|both --ids ordered|random]`
//!
//! One sequential client with keep-alive sends batches for `S` seconds per size (at least five
//! batches), each event new (a fresh request id) and attributed to one of `N` keys; every
//! answer is checked to have stored the whole batch. The table starts empty for each size.
//! Request ids are time-ordered, as the edge makes them (`RequestId::generate_ordered`), or
//! with `--ids random` 128 random bits, as edges made them before.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use keyplane_control_plane::Config;
use keyplane_control_plane::state::AppState;
use keyplane_control_plane::store::sql::Backend;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId, RequestId};
use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::usage::{USAGE_PATH, UsageBatch, UsageEvent};
use serde_json::{Value, json};

const BATCH_SIZES: [usize; 3] = [1, 100, 1000];
const MIN_BATCHES: usize = 5;

struct Options {
    seconds: f64,
    keys: usize,
    backends: Vec<Backend>,
    random_ids: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 10.0,
        keys: 20,
        backends: vec![Backend::Sqlite, Backend::Postgres],
        random_ids: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse()?,
            "--keys" => options.keys = value()?.parse()?,
            "--backend" => options.backends = support::backends(&value()?)?,
            "--ids" => {
                options.random_ids = match value()?.as_str() {
                    "random" => true,
                    "ordered" => false,
                    other => bail!("unknown --ids {other}"),
                }
            }
            // cargo bench passes --bench; ignore it and anything else cargo adds.
            _ => {}
        }
    }
    Ok(options)
}

/// One batch size's result.
struct Row {
    batch: usize,
    events: usize,
    elapsed: Duration,
    median_batch: Duration,
}

impl Row {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

async fn run_backend(backend: Backend, options: &Options) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_usage").await?;
    let config = Config {
        usage_retention_days: 0,
        ..support::config(dir.path(), &database_url)
    };
    let (application, first) = support::first_start(&config).await?;
    let admin_key = first.admin_key.expose_secret().to_owned();
    let org = first.org.id;
    let state = application.state().clone();
    let pool = support::raw_pool(&database_url).await?;
    let addr = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));

    let keys = options.keys;
    let keys = tokio::task::spawn_blocking({
        let admin_key = admin_key.clone();
        move || create_keys(addr, &admin_key, keys)
    })
    .await??;
    let mut rows = Vec::new();
    for batch in BATCH_SIZES {
        // Each size starts from an empty table.
        sqlx::query("DELETE FROM usage_events")
            .execute(&pool)
            .await?;
        if backend == Backend::Postgres {
            sqlx::query("VACUUM ANALYZE usage_events")
                .execute(&pool)
                .await?;
        }
        let seconds = options.seconds;
        let state = state.clone();
        let keys = keys.clone();
        let random_ids = options.random_ids;
        let row = tokio::task::spawn_blocking(move || {
            drive(addr, &state, org, &keys, (batch, random_ids), seconds)
        })
        .await??;
        eprintln!(
            "{backend:?}: batch {batch}: {} events in {:.1} s",
            row.events,
            row.elapsed.as_secs_f64()
        );
        // Every key's last use is its newest stored event (batches touch keys in chunks).
        let (wrong,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM api_keys k WHERE EXISTS \
             (SELECT 1 FROM usage_events e WHERE e.key_id = k.id) AND k.last_used_at <> \
             (SELECT MAX(e.at) FROM usage_events e WHERE e.key_id = k.id)",
        )
        .fetch_one(&pool)
        .await?;
        if wrong != 0 {
            bail!("{wrong} keys' last use is not their newest event");
        }
        rows.push(row);
    }
    let _ = stop.send(());
    server.await??;
    Ok(rows)
}

/// Creates the keys events are attributed to, through the API.
fn create_keys(
    addr: std::net::SocketAddr,
    admin_key: &str,
    count: usize,
) -> anyhow::Result<Vec<KeyId>> {
    let agent = ureq::Agent::new_with_defaults();
    (0..count)
        .map(|i| {
            let mut response = agent
                .post(&format!("http://{addr}/v1/keys"))
                .header("x-api-key", admin_key)
                .header("content-type", "application/json")
                .send(json!({"name": format!("bench {i}"), "environment": "live"}).to_string())?;
            let body: Value = serde_json::from_reader(response.body_mut().as_reader())?;
            let id = body["record"]["id"].as_str().context("key id")?;
            Ok(id.parse()?)
        })
        .collect()
}

/// Sends signed batches of `batch` events for `seconds` (and at least [`MIN_BATCHES`]), with
/// random request ids if `random_ids`.
fn drive(
    addr: std::net::SocketAddr,
    state: &AppState,
    org: OrgId,
    keys: &[KeyId],
    (batch, random_ids): (usize, bool),
    seconds: f64,
) -> anyhow::Result<Row> {
    let agent = ureq::Agent::new_with_defaults();
    let url = format!("http://{addr}{USAGE_PATH}");
    let statuses = [200, 200, 200, 200, 201, 204, 401, 403, 404, 429];
    let mut serial = 0usize;
    let mut next_batch = || -> anyhow::Result<Vec<u8>> {
        let now = state.now();
        let events = (0..batch)
            .map(|_| {
                serial += 1;
                let key = keys[serial % keys.len()];
                let request_id = if random_ids {
                    RequestId::generate()?
                } else {
                    RequestId::generate_ordered(now)?
                };
                Ok(UsageEvent::new(
                    request_id,
                    Some((key, org)),
                    Timestamp(now.as_millis()),
                    "GET",
                    &format!("/v1/contacts/{}", serial % 10_000),
                    statuses[serial % statuses.len()],
                    Some(&format!("203.0.113.{}", serial % 250)),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(serde_json::to_vec(&UsageBatch {
            edge: "bench".into(),
            events,
        })?)
    };
    let send = |body: Vec<u8>| -> anyhow::Result<usize> {
        let signature = sync::sign_now(
            &state.edge_secret,
            state.now().as_millis() / 1000,
            &SignedRequest {
                method: "POST",
                path_and_query: USAGE_PATH,
                body: &body,
            },
        )?;
        let mut response = agent
            .post(&url)
            .header(sync::SIGNATURE_HEADER, &signature)
            .header("content-type", "application/json")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)?;
        let status = response.status().as_u16();
        let receipt: Value = serde_json::from_reader(response.body_mut().as_reader())?;
        if status != 200 {
            bail!("ingestion answered {status}: {receipt}");
        }
        receipt["stored"]
            .as_u64()
            .and_then(|stored| usize::try_from(stored).ok())
            .context("receipt")
    };
    // Warm-up: the connection, prepared statements, caches.
    for _ in 0..3 {
        send(next_batch()?)?;
    }
    let budget = Duration::from_secs_f64(seconds);
    let mut durations = Vec::new();
    let mut events = 0;
    let started = Instant::now();
    let mut building = Duration::ZERO;
    while durations.len() < MIN_BATCHES || started.elapsed() < budget {
        // Building and serializing the batch is the edge's work, not ingestion's.
        let built = Instant::now();
        let body = next_batch()?;
        building += built.elapsed();
        let sent = Instant::now();
        let stored = send(body)?;
        durations.push(sent.elapsed());
        if stored != batch {
            bail!("stored {stored} of {batch}");
        }
        events += stored;
    }
    let elapsed = started.elapsed() - building;
    durations.sort();
    Ok(Row {
        batch,
        events,
        elapsed,
        median_batch: durations[durations.len() / 2],
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut report = String::from(
        "| backend | batch | events/s | median per batch | events/s ÷ batch-of-1 events/s |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for &backend in &options.backends {
        let rows = run_backend(backend, &options).await?;
        let baseline = rows
            .iter()
            .find(|row| row.batch == 1)
            .map_or(f64::NAN, Row::events_per_sec);
        for row in &rows {
            report.push_str(&format!(
                "| {backend:?} | {} | {:.0} | {:.2} ms | {:.1} |\n",
                row.batch,
                row.events_per_sec(),
                row.median_batch.as_secs_f64() * 1000.0,
                row.events_per_sec() / baseline
            ));
        }
    }
    println!(
        "\n{:.0} s per batch size, one sequential client, {} keys, {} request ids\n\n{report}",
        options.seconds,
        options.keys,
        if options.random_ids {
            "random"
        } else {
            "time-ordered"
        }
    );
    Ok(())
}
