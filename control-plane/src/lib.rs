//! Keyplane's control plane: the axum service behind the `keyplane` binary.
//!
//! This is the skeleton: it serves `GET /healthz` and shuts down gracefully. The REST API,
//! persistence, change feed and usage ingestion arrive in later issues.
//!
//! Layout:
//! - [`app`]: the router, so tests can drive it with `tower::ServiceExt::oneshot` and no socket.
//! - [`Config`]: what `keyplane serve` is told (listen address, data directory).
//! - [`serve`]: runs the router on a bound listener until a shutdown future resolves.
//! - [`shutdown_signal`]: resolves on Ctrl-C or SIGTERM.

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

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
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
