//! What the control plane's benchmarks share: the `--backend` option, fixed secrets, a fresh
//! database for each run, and the first start on it.

use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use axum::body::Body;
use axum::http::Request;
use keyplane_control_plane::state::SystemClock;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::{Application, Bootstrapped, Config};
use serde_json::Value;
use tower::ServiceExt as _;

#[path = "../../tests/common/fixed_secrets.rs"]
mod fixed_secrets;
pub use fixed_secrets::secrets_env;

const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The benchmarks' configuration: any free port, local development (webhooks to this
/// machine), the first organization named "Bench", the defaults otherwise.
pub fn config(data_dir: &std::path::Path, database_url: &str) -> Config {
    Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(database_url.to_owned()),
        key_prefix: Default::default(),
        org_name: "Bench".into(),
        usage_retention_days: 30,
        metrics_listen: None,
        max_rate_limit: Default::default(),
        trusted_proxies: Default::default(),
        local_dev: true,
        people: Default::default(),
        github_scanning_keys: None,
    }
}

/// The application on `config`'s fresh database, and what its first start made (the first
/// organization, its admin key, the first owner's setup link).
pub async fn first_start(config: &Config) -> anyhow::Result<(Application, Bootstrapped)> {
    let (application, bootstrapped) =
        Application::build_with(config, Arc::new(SystemClock), secrets_env).await?;
    Ok((application, bootstrapped.context("a fresh database")?))
}

/// The value of `--backend`: `sqlite`, `postgres` or `both`.
pub fn backends(value: &str) -> anyhow::Result<Vec<Backend>> {
    Ok(match value {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        "both" => vec![Backend::Sqlite, Backend::Postgres],
        other => bail!("unknown backend {other}"),
    })
}

/// A pool of the benchmark's own on `database_url`, for seeding and checking with raw SQL
/// (the application's store is reached only through its `Store` trait).
pub async fn raw_pool(database_url: &str) -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?)
}

/// A fresh, empty database: a SQLite file in `dir`, or PostgreSQL database `name` at
/// 127.0.0.1:5432 (dropped first if a previous run left it).
pub async fn database_url(
    backend: Backend,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<String> {
    Ok(match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
        Backend::Postgres => {
            use sqlx::Executor as _;
            let admin = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(POSTGRES_ADMIN_URL)
                .await
                .context("PostgreSQL at 127.0.0.1:5432")?;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await?;
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await?;
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    })
}

/// An in-process call of the API with `key`; the answer's JSON (null when it has none), an
/// error unless it succeeded.
#[allow(dead_code)] // not every benchmark calls the API in process
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    ensure!(status.is_success(), "{method} {path}: {status}");
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
