//! The dashboard's key list with 10,000 keys in the store: server time (median and p99) of the
//! first page, a later page, a filtered page and a key's page, next to the JSON API's list page
//! of the same 50 keys measured in the same run (the baseline the ratios are against), on SQLite
//! and on PostgreSQL; and the key list's weight at first load (HTML, stylesheet, script).
//!
//! `cargo bench -p keyplane-control-plane --bench dashboard_pages [-- --keys N --samples N --backend sqlite|postgres|both]`
//!
//! One sequential HTTP client with keep-alive drives a real listener, signed in through the
//! first owner's setup link like a person (the session cookie, no management key).

#[path = "support/seeded.rs"]
mod seeded;
mod support;

use std::time::Instant;

use anyhow::{Context as _, bail};
use keyplane_control_plane::store::sql::Backend;
use keyplane_shared::ids::KeyId;

struct Row {
    what: &'static str,
    median_ms: f64,
    p99_ms: f64,
}

struct Measured {
    rows: Vec<Row>,
    weight: Vec<(&'static str, usize)>,
}

async fn run_backend(backend: Backend, options: &seeded::Options) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let database_url = support::database_url(backend, dir.path(), "keyplane_bench_pages").await?;
    let config = support::config(dir.path(), &database_url);
    let (application, first) = support::first_start(&config).await?;
    let setup_token = first
        .setup_link
        .split_once("#token=")
        .context("a setup token")?
        .1
        .to_owned();
    let pool = support::raw_pool(&database_url).await?;
    let started = Instant::now();
    let ids = seeded::seed(&pool, options.keys).await?;
    eprintln!(
        "{backend:?}: seeded {} keys in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let addr = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let samples = options.samples;
    let measured =
        tokio::task::spawn_blocking(move || drive(addr, &setup_token, &ids, samples)).await??;
    let _ = stop.send(());
    server.await??;
    Ok(measured)
}

fn drive(
    addr: std::net::SocketAddr,
    setup_token: &str,
    ids: &[KeyId],
    samples: usize,
) -> anyhow::Result<Measured> {
    let base = format!("http://{addr}");
    let agent = ureq::Agent::new_with_defaults();
    // The first owner joins through the setup page's form, as a person would.
    let password = "correct horse battery staple";
    let body = serde_html_form::to_string([
        ("token", setup_token),
        ("email", "owner@example.com"),
        ("display_name", "Owner"),
        ("password", password),
        ("confirm_password", password),
    ])?;
    let joined = agent
        .post(&format!("{base}/invitation"))
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .config()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .send(body)?;
    if joined.status().as_u16() != 303 {
        bail!("joining through the setup page: {}", joined.status());
    }
    let cookie = joined
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .context("a session cookie")?
        .to_owned();
    let fetch = |path: &str| -> anyhow::Result<(u16, String)> {
        let mut response = agent
            .get(&format!("{base}{path}"))
            .header("cookie", &cookie)
            .config()
            .http_status_as_error(false)
            .build()
            .call()?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((status, text))
    };
    let timed = |path: &dyn Fn(usize) -> String, n: usize| -> anyhow::Result<(f64, f64)> {
        let mut durations = Vec::with_capacity(n);
        for i in 0..n {
            let path = path(i);
            let started = Instant::now();
            let (status, _) = fetch(&path)?;
            durations.push(started.elapsed());
            if status != 200 {
                bail!("{path}: {status}");
            }
        }
        Ok(seeded::summary(durations))
    };
    for _ in 0..20 {
        fetch("/keys")?;
        fetch("/v1/keys?limit=50")?;
    }
    // A cursor deep in the list, for a later page.
    let (_, api_page) = fetch("/v1/keys?limit=50")?;
    let page: serde_json::Value = serde_json::from_str(&api_page)?;
    let cursor = page["next_cursor"]
        .as_str()
        .context("a next page")?
        .to_owned();
    let stride = (ids.len() / samples.max(1)).max(1);
    let api = timed(&|_| "/v1/keys?limit=50".to_owned(), samples)?;
    let first_page = timed(&|_| "/keys".to_owned(), samples)?;
    let later_page = timed(&|_| format!("/keys?cursor={cursor}"), samples)?;
    let filtered = timed(
        &|i| format!("/keys?name=seeded+key+{}&status=active", i * 7),
        samples,
    )?;
    let detail = timed(
        &|i| format!("/keys/{}", ids[(i * stride) % ids.len()]),
        samples,
    )?;
    // Weight of the first load of the key list: the page and everything it references.
    let mut weight = Vec::new();
    for (what, path) in [
        ("/keys (HTML)", "/keys"),
        ("/assets/dashboard.css", "/assets/dashboard.css"),
        ("/assets/dashboard.js", "/assets/dashboard.js"),
        ("/brand.css", "/brand.css"),
    ] {
        let (status, text) = fetch(path)?;
        if status != 200 {
            bail!("{path}: {status}");
        }
        weight.push((what, text.len()));
    }
    let row = |what, (median_ms, p99_ms): (f64, f64)| Row {
        what,
        median_ms,
        p99_ms,
    };
    Ok(Measured {
        rows: vec![
            row("JSON API list page of 50 (baseline)", api),
            row("key list, first page (GET /keys)", first_page),
            row("key list, a later page (cursor)", later_page),
            row("key list, filtered by name and status", filtered),
            row("a key's page (GET /keys/{id})", detail),
        ],
        weight,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = seeded::Options::from_args(10_000, 200)?;
    let mut report = String::from(
        "| backend | page | median | p99 | median ÷ API list median |\n|---|---|---:|---:|---:|\n",
    );
    let mut weights = String::new();
    for &backend in &options.backends {
        let measured = run_backend(backend, &options).await?;
        let baseline = measured.rows.first().map_or(f64::NAN, |row| row.median_ms);
        for row in &measured.rows {
            report.push_str(&format!(
                "| {backend:?} | {} | {:.2} ms | {:.2} ms | {:.2} |\n",
                row.what,
                row.median_ms,
                row.p99_ms,
                row.median_ms / baseline
            ));
        }
        if weights.is_empty() {
            let total: usize = measured.weight.iter().map(|(_, bytes)| bytes).sum();
            for (what, bytes) in &measured.weight {
                weights.push_str(&format!("| {what} | {bytes} B |\n"));
            }
            weights.push_str(&format!("| first load of /keys, in all | {total} B |\n"));
        }
    }
    println!(
        "\n{} keys in the store, {} samples per page\n\n{report}\n| resource (uncompressed) | bytes |\n|---|---:|\n{weights}",
        options.keys, options.samples
    );
    Ok(())
}
