//! Keyplane's control plane: the axum service behind the `keyplane` binary.
//!
//! This is the skeleton: it serves `GET /healthz` and shuts down gracefully. The REST API,
//! persistence, change feed and usage ingestion arrive in later issues.
//!
//! Layout:
//! - [`app`]: the router, so tests can drive it with `tower::ServiceExt::oneshot` and no socket.
//! - [`Config`]: what `keyplane serve` is told (listen address, data directory).
//! - [`serve`]: runs the router on a bound listener until a shutdown future resolves.
//! - [`shutdown_signal`]: installs the Ctrl-C / SIGTERM handlers; its future resolves on either.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How `keyplane serve` is configured; every field also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "KEYPLANE_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Directory for the control plane's data (the SQLite database, later).
    #[arg(long, env = "KEYPLANE_DATA_DIR", default_value = ".keyplane")]
    pub data_dir: PathBuf,
}

/// The control plane's HTTP routes.
pub fn app() -> Router {
    Router::new().route("/healthz", get(healthz))
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Prepares the data directory, binds the listener and serves until `shutdown` resolves.
///
/// Prints `keyplane listening on http://<addr>` once bound, so callers that asked for
/// port 0 (tests, scripts) learn the real port from stdout.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("keyplane listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "control plane started");
    serve(listener, shutdown).await
}

/// Serves [`app`] on an already bound listener until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, app())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}

/// A future that resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled:
/// call it before announcing the listener, so a signal sent right after start-up is not
/// lost to the default action (termination without a graceful shutdown).
#[cfg(unix)]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

/// A future that resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn healthz_answers_ok_without_a_server() {
        let response = super::app()
            .oneshot(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("valid request"),
            )
            .await
            .expect("infallible router");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], br#"{"status":"ok"}"#);
    }
}
