//! 1,000 key creates sent at once, then 1,000 revokes sent at once, over HTTP, on SQLite and on
//! PostgreSQL: each call's latency (median, p90, p99, max), the burst's wall time, and the
//! process's peak memory. Beside them, measured in the same run: what one Argon2id hash costs
//! when hashes queue (40 sent at once, their wall time divided by 40; a create hashes the new
//! key, so a burst of creates takes about `creates × that` at best: the creates' floor) and one
//! revoke sent alone (the revokes' baseline).
//!
//! `cargo bench -p keyplane-control-plane --bench concurrent_writes [-- --calls N --backend sqlite|postgres|both]`
//!
//! Checked after each burst, so a figure never comes from a run that lost something: every call
//! answered 201 / 200, the keys are all there (and all revoked after the second burst), and the
//! replication feed holds one change per call, numbered 1..N without a gap.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use keyplane_control_plane::hashing;
use keyplane_control_plane::store::sql::Backend;
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use serde_json::{Value, json};

/// Latencies of a burst of calls and how long the whole burst took.
struct Burst {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Burst {
    fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted
            .get(index)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

struct Figures {
    hash_ms: f64,
    lone_revoke_ms: f64,
    creates: Burst,
    revokes: Burst,
    peak_rss_before_mib: f64,
    peak_rss_after_mib: f64,
}

/// Starts counting the process's peak resident memory afresh (Linux: `5` into `clear_refs`),
/// so each backend's bursts are measured on their own.
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")
}

/// The process's peak resident memory since the last reset (`VmHWM`), in MiB.
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// Sends every request of `bodies` at once (one task each), each to `path_of(index)`; their
/// latencies, failing unless every one answered `expected`. Returns the answers' bodies too.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    admin_key: &str,
    calls: Vec<(String, Value)>,
    expected: u16,
) -> anyhow::Result<(Burst, Vec<Value>)> {
    let started = Instant::now();
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|(path, body)| {
            let request = client
                .post(format!("{base}{path}"))
                .bearer_auth(admin_key)
                .header("content-type", "application/json")
                .body(body.to_string());
            tokio::spawn(async move {
                let sent = Instant::now();
                let response = request.send().await?;
                let status = response.status().as_u16();
                let answer: Value = serde_json::from_slice(&response.bytes().await?)?;
                anyhow::Ok((sent.elapsed(), status, answer))
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (latency, status, answer) = task.await??;
        ensure!(status == expected, "answered {status}: {answer}");
        latencies.push(latency);
        answers.push(answer);
    }
    Ok((
        Burst {
            latencies,
            wall: started.elapsed(),
        },
        answers,
    ))
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// What one Argon2id hash costs the machine when hashes queue: `samples` hashes sent at once
/// (through the same permits as the server's, one per core), their wall time divided by
/// `samples`, in ms. A burst of creates cannot do much better per create.
async fn hash_ms(samples: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let hashes: Vec<_> = (0..samples)
        .map(|_| {
            tokio::spawn(async move {
                let key = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
                anyhow::Ok(hashing::hash_key(&key).await?)
            })
        })
        .collect();
    for hash in hashes {
        hash.await??;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / samples as f64)
}

/// How many changes the feed holds, after checking they are numbered 1..=N without a gap.
async fn gap_free_feed(pool: &sqlx::AnyPool) -> anyhow::Result<i64> {
    let (rows, lowest, highest): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(MIN(seq), 1), COALESCE(MAX(seq), 0) FROM changes",
    )
    .fetch_one(pool)
    .await?;
    ensure!(
        lowest == 1 && highest == rows,
        "the feed holds {rows} changes numbered {lowest}..{highest}: a gap"
    );
    Ok(rows)
}

async fn run_backend(backend: Backend, calls: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_writes").await?;
    let config = support::config(dir.path(), &database_url);
    let (application, first) = support::first_start(&config).await?;
    let admin_key = first.admin_key.expose_secret().to_owned();
    let pool = support::raw_pool(&database_url).await?;
    let addr = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    // reqwest is built without a TLS provider of its own (the control plane installs ring's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;

    // Baselines, each call alone.
    let hash_ms = hash_ms(40).await?;
    let mut lone = Vec::new();
    for n in 0..20 {
        let create = json!({"name": format!("lone-{n}"), "environment": "live"});
        let (_, created) = burst(
            &client,
            &base,
            &admin_key,
            vec![("/v1/keys".into(), create)],
            201,
        )
        .await?;
        let id = created[0]["record"]["id"]
            .as_str()
            .context("id")?
            .to_owned();
        let revoke = (format!("/v1/keys/{id}/revoke"), json!({"reason": "unused"}));
        let (alone, _) = burst(&client, &base, &admin_key, vec![revoke], 200).await?;
        lone.extend(alone.latencies);
    }
    let lone_revoke_ms = median_ms(lone);
    let before = gap_free_feed(&pool).await?;

    reset_peak_rss()?;
    let peak_rss_before_mib = peak_rss_mib()?;
    let creates = (0..calls)
        .map(|n| {
            let body = json!({"name": format!("burst-{n}"), "environment": "live"});
            ("/v1/keys".to_owned(), body)
        })
        .collect();
    let (creates, created) = burst(&client, &base, &admin_key, creates, 201).await?;
    let after_creates = gap_free_feed(&pool).await?;
    ensure!(
        after_creates == before + calls as i64,
        "{calls} creates added {} changes",
        after_creates - before
    );
    let ids: Vec<String> = created
        .iter()
        .map(|answer| {
            answer["record"]["id"]
                .as_str()
                .map(str::to_owned)
                .context("record.id")
        })
        .collect::<anyhow::Result<_>>()?;
    let revokes = ids
        .iter()
        .map(|id| {
            let body = json!({"reason": "unused"});
            (format!("/v1/keys/{id}/revoke"), body)
        })
        .collect();
    let (revokes, _) = burst(&client, &base, &admin_key, revokes, 200).await?;
    let peak_rss_after_mib = peak_rss_mib()?;
    let after_revokes = gap_free_feed(&pool).await?;
    ensure!(
        after_revokes == after_creates + calls as i64,
        "{calls} revokes added {} changes",
        after_revokes - after_creates
    );
    let revoked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE name LIKE 'burst-%' AND revoked_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(revoked == calls as i64, "{revoked} of {calls} keys revoked");
    let _ = stop.send(());
    server.await??;
    Ok(Figures {
        hash_ms,
        lone_revoke_ms,
        creates,
        revokes,
        peak_rss_before_mib,
        peak_rss_after_mib,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    let option = |name: &str| {
        arguments
            .iter()
            .position(|arg| arg == name)
            .and_then(|at| arguments.get(at + 1))
    };
    let calls: usize = option("--calls").map_or(Ok(1000), |text| text.parse())?;
    let backends = support::backends(option("--backend").map_or("both", String::as_str))?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut table = String::from(
        "| backend | burst | wall | median | p90 | p99 | max | baseline | wall / floor |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut memory = String::new();
    for backend in backends {
        let f = run_backend(backend, calls).await?;
        // Creates cannot end before every hash is done.
        let create_floor_ms = calls as f64 * f.hash_ms;
        // Revokes: the lone revoke's latency, were they done one after another.
        let revoke_serial_ms = calls as f64 * f.lone_revoke_ms;
        for (what, burst, baseline, floor_ms) in [
            (
                "creates",
                &f.creates,
                format!("hash {:.1} ms queued", f.hash_ms),
                create_floor_ms,
            ),
            (
                "revokes",
                &f.revokes,
                format!("alone {:.1} ms", f.lone_revoke_ms),
                revoke_serial_ms,
            ),
        ] {
            table.push_str(&format!(
                "| {backend:?} | {calls} {what} | {:.2} s | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {baseline} | {:.2} |\n",
                burst.wall.as_secs_f64(),
                burst.quantile_ms(0.5),
                burst.quantile_ms(0.9),
                burst.quantile_ms(0.99),
                burst.quantile_ms(1.0),
                burst.wall.as_secs_f64() * 1e3 / floor_ms,
            ));
        }
        memory.push_str(&format!(
            "{backend:?}: resident {:.0} MiB before the bursts, peak {:.0} MiB during them (server and client)\n",
            f.peak_rss_before_mib, f.peak_rss_after_mib
        ));
    }
    println!(
        "\n{calls} calls at once, {cores} cores; wall / floor: creates against {calls} queued \
         hashes, revokes against {calls} lone revokes one after another\n\n{table}\n{memory}"
    );
    Ok(())
}
