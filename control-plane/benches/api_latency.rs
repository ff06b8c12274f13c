//! Control-plane latency over HTTP with 100k keys in the store: median and p99 of create, get,
//! list page and revoke, on SQLite and on PostgreSQL, next to the cost of one Argon2id hash
//! measured in the same run (create hashes the new key; the other calls do not hash at all).
//!
//! `cargo bench -p keyplane-control-plane --bench api_latency [-- --keys N --samples N --backend sqlite|postgres|both]`
//!
//! The store is seeded directly in SQL (seeding 100k keys through the API would spend an hour
//! in Argon2id), then a real listener is driven by one sequential HTTP client with keep-alive.

#[path = "support/seeded.rs"]
mod seeded;
mod support;

use std::time::Instant;

use anyhow::{Context as _, bail};
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::{Config, hashing};
use keyplane_shared::ids::KeyId;
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use serde_json::{Value, json};

struct Row {
    operation: &'static str,
    median_ms: f64,
    p99_ms: f64,
}

async fn run_backend(backend: Backend, options: &seeded::Options) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench").await?;
    let config = Config {
        people: keyplane_control_plane::config::PeopleConfig {
            host_tokens: Some(host_product(dir.path())?),
            // The bench signs in many times from one address: lift the throttle.
            login_limit_per_email: "100000/min,burst=10000"
                .parse()
                .map_err(anyhow::Error::msg)?,
            login_limit_per_address: "100000/min,burst=10000"
                .parse()
                .map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
        ..support::config(dir.path(), &database_url)
    };
    let (application, first) = support::first_start(&config).await?;
    let admin_key = first.admin_key.expose_secret().to_owned();
    let org = first.org.id.to_string();
    let setup_token = first
        .setup_link
        .split_once("#token=")
        .context("a setup token")?
        .1
        .to_owned();
    let started = Instant::now();
    let pool = support::raw_pool(&database_url).await?;
    let ids = seeded::seed(&pool, options.keys).await?;
    eprintln!(
        "{backend:?}: seeded {} keys in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    // Argon2id alone, in the same process and run, just before the HTTP calls.
    let key = ApiKey::generate(&KeyPrefix::default(), Environment::Live)?;
    let mut hashes = Vec::with_capacity(options.samples);
    for _ in 0..options.samples.min(100) {
        let started = Instant::now();
        hashing::hash_key(&key).await?;
        hashes.push(started.elapsed());
    }
    let argon2 = seeded::summary(hashes);
    let addr = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));

    let samples = options.samples;
    let people = People {
        setup_token,
        host_token: host_token(&org)?,
    };
    let rows = tokio::task::spawn_blocking(move || drive(addr, &admin_key, &ids, samples, &people))
        .await??;
    let _ = stop.send(());
    server.await??;

    let mut rows = rows;
    rows.push(Row {
        operation: "argon2id hash alone",
        median_ms: argon2.0,
        p99_ms: argon2.1,
    });
    Ok(rows)
}

/// The fixtures' ES256 public key as the one trusted host product; the configuration's path.
fn host_product(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("host-tokens.json");
    let file = json!({"issuers": [{
        "issuer": "https://app.example.com",
        "audience": "keyplane",
        "algorithm": "ES256",
        "public_keys": [{"kid": "k1", "pem_file": fixture("es256-1.pub.pem")}],
    }]});
    std::fs::write(&path, file.to_string())?;
    Ok(path)
}

fn fixture(name: &str) -> String {
    format!(
        "{}/src/host_token/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A host product's token for an admin of `org`, valid for an hour.
fn host_token(org: &str) -> anyhow::Result<String> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-1.key.pem"))?)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({
        "iss": "https://app.example.com", "aud": "keyplane", "sub": "bench-user",
        "name": "Bench", "org": org, "role": "admin", "iat": now, "exp": now + 3600,
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// What the people rows need: the first owner's setup token and a host product's token.
struct People {
    setup_token: String,
    host_token: String,
}

/// The HTTP client side: sequential requests with keep-alive.
fn drive(
    addr: std::net::SocketAddr,
    admin_key: &str,
    ids: &[KeyId],
    samples: usize,
    people: &People,
) -> anyhow::Result<Vec<Row>> {
    let agent = ureq::Agent::new_with_defaults();
    let base = format!("http://{addr}");
    let timed = |f: &mut dyn FnMut(usize) -> anyhow::Result<u16>, expect: u16, n: usize| {
        let mut durations = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            let status = f(i)?;
            durations.push(started.elapsed());
            if status != expect {
                bail!("expected {expect}, got {status}");
            }
        }
        Ok::<_, anyhow::Error>(seeded::summary(durations))
    };
    let get = |path: &str| -> anyhow::Result<(u16, Value)> {
        let mut response = agent
            .get(&format!("{base}{path}"))
            .header("x-api-key", admin_key)
            .config()
            .http_status_as_error(false)
            .build()
            .call()?;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_reader(response.body_mut().as_reader())?;
        Ok((status, body))
    };
    let post = |path: &str, body: Value| -> anyhow::Result<u16> {
        let response = agent
            .post(&format!("{base}{path}"))
            .header("x-api-key", admin_key)
            .header("content-type", "application/json")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.to_string())?;
        Ok(response.status().as_u16())
    };
    // Warm-up: connections, the management key's one Argon2id verification, caches.
    for i in 0..20 {
        get(&format!("/v1/keys/{}", ids[i % ids.len()]))?;
    }
    let stride = (ids.len() / (samples * 5).max(1)).max(1);
    let create = timed(
        &mut |i| {
            post(
                "/v1/keys",
                json!({"name": format!("bench {i}"), "environment": "live", "scopes": ["contacts:read"]}),
            )
        },
        201,
        samples,
    )?;
    let get_one = timed(
        &mut |i| Ok(get(&format!("/v1/keys/{}", ids[(i * stride) % ids.len()]))?.0),
        200,
        samples * 5,
    )?;
    let mut cursor: Option<String> = None;
    let list = timed(
        &mut |_| {
            let path = match &cursor {
                Some(c) => format!("/v1/keys?limit=50&cursor={c}"),
                None => "/v1/keys?limit=50".to_owned(),
            };
            let (status, body) = get(&path)?;
            cursor = body["next_cursor"].as_str().map(str::to_owned);
            Ok(status)
        },
        200,
        samples,
    )?;
    let revoke = timed(
        &mut |i| {
            let id = ids[(i * stride + 1) % ids.len()];
            post(
                &format!("/v1/keys/{id}/revoke"),
                json!({"reason": "unused"}),
            )
        },
        200,
        samples,
    )?;
    // People: the first owner's account, then sign-ins (Argon2id-bound) and a list page read
    // with a host product's token (signature check, user and membership lookups).
    let password = "correct horse battery staple";
    let send = |path: &str, body: Value, bearer: Option<&str>| -> anyhow::Result<u16> {
        let mut request = agent
            .post(&format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let response = request
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.to_string())?;
        Ok(response.status().as_u16())
    };
    let accepted = send(
        "/v1/invitations/accept",
        json!({"token": people.setup_token, "email": "owner@example.com",
               "display_name": "Owner", "password": password}),
        None,
    )?;
    if accepted != 201 {
        bail!("accepting the setup link: {accepted}");
    }
    let sign_in = timed(
        &mut |_| {
            send(
                "/v1/sessions",
                json!({"email": "owner@example.com", "password": password}),
                None,
            )
        },
        201,
        samples.min(100),
    )?;
    let list_with_token = timed(
        &mut |_| {
            let response = agent
                .get(&format!("{base}/v1/keys?limit=50"))
                .header("authorization", &format!("Bearer {}", people.host_token))
                .config()
                .http_status_as_error(false)
                .build()
                .call()?;
            Ok(response.status().as_u16())
        },
        200,
        samples,
    )?;
    let row = |operation, (median_ms, p99_ms): (f64, f64)| Row {
        operation,
        median_ms,
        p99_ms,
    };
    Ok(vec![
        row("create (POST /v1/keys)", create),
        row("get (GET /v1/keys/{id})", get_one),
        row("list page of 50 (GET /v1/keys)", list),
        row("revoke (POST /v1/keys/{id}/revoke)", revoke),
        row("sign in (POST /v1/sessions)", sign_in),
        row("list page of 50 with a host token (JWT)", list_with_token),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = seeded::Options::from_args(100_000, 200)?;
    let mut report = String::from(
        "| backend | operation | median | p99 | median ÷ argon2id median |\n|---|---|---:|---:|---:|\n",
    );
    for &backend in &options.backends {
        let rows = run_backend(backend, &options).await?;
        let argon2 = rows
            .iter()
            .find(|row| row.operation == "argon2id hash alone")
            .map_or(f64::NAN, |row| row.median_ms);
        for row in rows {
            report.push_str(&format!(
                "| {backend:?} | {} | {:.2} ms | {:.2} ms | {:.2} |\n",
                row.operation,
                row.median_ms,
                row.p99_ms,
                row.median_ms / argon2
            ));
        }
    }
    println!(
        "\n{} keys in the store, {} samples per operation (get: 5×)\n\n{report}",
        options.keys, options.samples
    );
    Ok(())
}
