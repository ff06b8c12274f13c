//! A GitHub secret-scanning report of 1,000 tokens, answered over HTTP: how long from the post
//! to the feedback array, on SQLite and on PostgreSQL, next to a report of one token measured
//! in the same run (the baseline: the request, the signature check and one revoke). Half the
//! tokens are live keys of this deployment (revoked by the report), half well-formed keys it
//! never issued; the store holds `--keys` other keys besides.
//!
//! `cargo bench -p keyplane-control-plane --bench leak_report [-- --keys N --samples N --backend sqlite|postgres|both]`
//!
//! The target (issue 16): a 1,000-token report answered within a second.

#[path = "support/seeded.rs"]
mod seeded;
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::{Application, Config};
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

const KEY_ID: &str = "bench-github-key";
/// Tokens in the large report, and how many of them are live keys.
const TOKENS: usize = 1000;
const LIVE: usize = 500;

fn github_key() -> SigningKey {
    SigningKey::from_slice(&[7; 32]).expect("a P-256 key")
}

/// GitHub's key list holding the bench's key, written into `dir`; its path.
fn trust_github(dir: &std::path::Path) -> anyhow::Result<String> {
    let pem = github_key()
        .verifying_key()
        .to_public_key_pem(Default::default())?;
    let path = dir.join("github-keys.json");
    let list = json!({"public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]});
    std::fs::write(&path, list.to_string())?;
    Ok(path.display().to_string())
}

struct Figures {
    large: (f64, f64),
    single: (f64, f64),
}

/// `live` new keys seeded with their real lookup digests, and `unknown` keys never issued.
async fn report_tokens(
    application: &Application,
    pool: &sqlx::AnyPool,
    live: usize,
    unknown: usize,
) -> anyhow::Result<Vec<String>> {
    let prefix = KeyPrefix::default();
    let pepper = application.state().peppers.current();
    let mut tokens = Vec::with_capacity(live + unknown);
    let mut digests = Vec::with_capacity(live);
    for index in 0..live + unknown {
        let key = ApiKey::generate(&prefix, Environment::Live)?;
        if index < live {
            digests.push(*pepper.digest(&key).as_bytes());
        }
        tokens.push(key.expose_secret().to_owned());
    }
    seeded::seed_digests(pool, &digests).await?;
    Ok(tokens)
}

fn body_of(tokens: &[String]) -> String {
    let items: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            json!({"token": token, "type": "keyplane_api_key",
                   "url": format!("https://github.com/acme/app/blob/main/file{n}.env"), "source": "content"})
        })
        .collect();
    Value::Array(items).to_string()
}

/// Posts one signed report; the time to its answer and how many tokens it called live.
fn post_report(agent: &ureq::Agent, base: &str, body: &str) -> anyhow::Result<(Duration, usize)> {
    let signature: DerSignature = github_key().sign(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_bytes());
    let started = Instant::now();
    let mut response = agent
        .post(&format!("{base}/v1/leaks/github"))
        .header("content-type", "application/json")
        .header("github-public-key-identifier", KEY_ID)
        .header("github-public-key-signature", &signature)
        .config()
        .http_status_as_error(false)
        .build()
        .send(body)?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    let elapsed = started.elapsed();
    ensure!(status == 200, "the report answered {status}: {text}");
    let answer: Value = serde_json::from_str(&text)?;
    let items = answer.as_array().context("a feedback array")?;
    let live = items
        .iter()
        .filter(|item| item["label"] == "true_positive")
        .count();
    Ok((elapsed, live))
}

async fn run_backend(backend: Backend, options: &seeded::Options) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_leaks").await?;
    let config = Config {
        github_scanning_keys: Some(trust_github(dir.path())?),
        ..support::config(dir.path(), &database_url)
    };
    let (application, _) = support::first_start(&config).await?;
    let pool = support::raw_pool(&database_url).await?;
    let started = Instant::now();
    seeded::seed(&pool, options.keys).await?;
    eprintln!(
        "{backend:?}: seeded {} keys in {:.1} s",
        options.keys,
        started.elapsed().as_secs_f64()
    );
    // Every report's tokens are fresh: a replayed report revokes nothing and would be cheaper.
    let mut large_bodies = Vec::with_capacity(options.samples);
    for _ in 0..options.samples {
        large_bodies.push(body_of(
            &report_tokens(&application, &pool, LIVE, TOKENS - LIVE).await?,
        ));
    }
    let singles = options.samples * 4;
    let mut single_bodies = Vec::with_capacity(singles);
    for _ in 0..singles {
        single_bodies.push(body_of(&report_tokens(&application, &pool, 1, 0).await?));
    }
    let addr = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let figures = tokio::task::spawn_blocking(move || -> anyhow::Result<Figures> {
        let agent = ureq::Agent::new_with_defaults();
        let base = format!("http://{addr}");
        // Warm-up: the connection, the statement caches.
        let warm = body_of(&["sk_live_not-a-key".to_owned()]);
        post_report(&agent, &base, &warm)?;
        let mut single = Vec::new();
        let mut large = Vec::new();
        // Interleaved, so a slow moment of the machine lands on both.
        for (index, body) in single_bodies.iter().enumerate() {
            let (elapsed, live) = post_report(&agent, &base, body)?;
            ensure!(live == 1, "a one-token report found {live} live keys");
            single.push(elapsed);
            if index % 4 == 3 {
                let (elapsed, live) = post_report(&agent, &base, &large_bodies[index / 4])?;
                ensure!(live == LIVE, "a report found {live} live keys, not {LIVE}");
                large.push(elapsed);
            }
        }
        Ok(Figures {
            large: seeded::summary(large),
            single: seeded::summary(single),
        })
    })
    .await??;
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revocation_reason = 'compromised'")
            .fetch_one(&pool)
            .await?;
    let expected = (options.samples * (LIVE + 4)) as i64;
    ensure!(
        revoked == expected,
        "{revoked} keys revoked as compromised, not {expected}"
    );
    let _ = stop.send(());
    server.await??;
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = seeded::Options::from_args(10_000, 5)?;
    let mut table = String::from(
        "| backend | 1,000-token report (500 live) median | max | 1-token report median | ratio | within 1 s |\n|---|---:|---:|---:|---:|---|\n",
    );
    for &backend in &options.backends {
        let figures = run_backend(backend, &options).await?;
        let (large, large_max) = figures.large;
        let (single, _) = figures.single;
        table.push_str(&format!(
            "| {backend:?} | {large:.0} ms | {large_max:.0} ms | {single:.1} ms | {:.1}× | {} |\n",
            large / single,
            if large_max < 1000.0 { "yes" } else { "NO" }
        ));
    }
    println!(
        "\n{} other keys in the store, {} reports of each size\n\n{table}",
        options.keys, options.samples
    );
    Ok(())
}
