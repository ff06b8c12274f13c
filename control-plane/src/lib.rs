//! Keyplane's control plane: the axum service behind the `keyplane` binary.
//!
//! Layout:
//! - [`Application`]: built from a [`Config`] by `main` and by the tests alike (secrets, store,
//!   first-start bootstrap, listener); [`app`] is the router alone, for `oneshot` tests.
//! - [`keys`], [`audit::api`], [`ops`]: one module per resource, each exposing `router()`.
//! - [`auth`]: the management-key extractor; [`error`]: the one error type and its body;
//!   [`extract`]: extractors whose rejections use that body.
//! - [`store`]: the storage trait and its SQLite / PostgreSQL implementation.
//! - [`replication`]: the signed feed edges pull, the edge registry's rules, and the pusher
//!   that [`Application::serve`] runs beside the API.
//! - [`usage`]: usage ingestion from the edges, the per-key usage API, and the retention
//!   cleanup that [`Application::serve`] also runs.
//! - [`audit`]: the audit log's chain and API, and the coalescing of refused management calls
//!   whose flush task [`Application::serve`] runs too.
//! - `/metrics` is on the main listener ([`app`]) unless `--metrics-listen` gives it its own
//!   ([`metrics_app`]; the main one is then [`app_with`] [`MetricsRoute::Separate`]).
//! - [`bootstrap`]: opening the data directory, secrets and store into an [`AppState`], and the
//!   first start's organization.
//! - [`dashboard`]: the web pages at `/` (server-rendered, calling the same handlers).
//! - [`portal`]: one-time portal links for host products, and each organization's branding.
//! - [`webhooks`]: webhook endpoints, the delivery worker [`Application::serve`] runs, and
//!   the signing of what it sends (the events themselves are written by [`store`]'s outbox).
//! - [`leaks`]: reports of leaked keys, which revoke them; [`scanning_keys`]: the keys GitHub
//!   signs its reports with.
//! - [`cli`]: the binary's client commands (`keys`, `usage`, `audit`, `whoami`), which talk to
//!   a running control plane over this REST API, never to the store.
//! - [`secrets`], [`config`], [`hashing`], [`metrics`], [`state`], [`openapi`].

pub mod access;
pub mod accounts;
pub mod audit;
pub mod auth;
pub mod background;
pub mod bootstrap;
pub mod ceiling;
pub mod cli;
pub mod client_address;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod fetched_keys;
pub mod hashing;
pub mod host_token;
pub mod input;
pub mod keys;
pub mod leaks;
pub mod limits;
pub mod mailer;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod people;
pub mod portal;
pub mod refusal_log;
pub mod replication;
pub mod scanning_keys;
pub mod secrets;
pub mod state;
pub mod store;
pub mod timestamps;
pub mod usage;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use bootstrap::{Bootstrapped, open_state};
pub use config::Config;
use error::ApiError;
use limits::MAX_BODY_BYTES;
use metrics::RequestLabels;
use state::{AppState, Clock, SystemClock};

/// Every route, with the OpenAPI document built from the same lists.
pub fn api_router() -> OpenApiRouter<AppState> {
    routes(MetricsRoute::Included)
}

/// Whether the main listener serves `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsRoute {
    /// It does (no `--metrics-listen`).
    Included,
    /// It answers 404: `/metrics` has its own listener.
    Separate,
}

fn routes(metrics: MetricsRoute) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).merge(ops::router());
    let router = match metrics {
        MetricsRoute::Included => router.merge(ops::metrics_router()),
        MetricsRoute::Separate => router,
    };
    router
        .merge(keys::router())
        .merge(people::router())
        .merge(audit::api::router())
        .merge(replication::feed::router())
        .merge(usage::router())
        .merge(portal::router())
        .merge(webhooks::router())
        .merge(leaks::router())
}

/// The control plane's router, ready to serve (`/metrics` included).
pub fn app(state: AppState) -> Router {
    app_with(state, MetricsRoute::Included)
}

/// The control plane's router, with or without `/metrics` (its OpenAPI document likewise).
pub fn app_with(state: AppState, metrics: MetricsRoute) -> Router {
    let (router, mut document) = routes(metrics).split_for_parts();
    openapi::complete_responses(&mut document);
    openapi::require_one_of(
        &mut document,
        "UpdateKeyRequest",
        &keys::model::UpdateKeyRequest::CHANGES,
    );
    openapi::for_deployment(
        &mut document,
        openapi::Deployment {
            ceiling: state.policy.max_rate_limit,
            prefix: &state.prefix,
            local_dev: state.policy.local_dev,
        },
    );
    router
        .merge(dashboard::router())
        .fallback(unrouted)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(Arc::new(document)))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn_with_state(state.clone(), stamp_date))
        .layer(middleware::from_fn(error::respond_with_request_id))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        // Outermost: nothing below, the trace layer included, ever logs a key, a host
        // product's token, a session cookie or a CSRF token (nor a new session's cookie).
        .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE]))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static(auth::session::CSRF_HEADER),
        ]))
        .with_state(state)
}

/// The router of the `--metrics-listen` listener: `/metrics` alone, 404 for anything else.
pub fn metrics_app(state: AppState) -> Router {
    let (router, _) = ops::metrics_router().split_for_parts();
    router
        .fallback(unrouted)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(error::respond_with_request_id))
        .with_state(state)
}

async fn unrouted() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Dates every answer by the application's clock (HTTP would use the system's): a client
/// measuring ages (`keyplane keys rotate-due`) uses the clock the records were written by.
async fn stamp_date(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let millis = u64::try_from(state.now().as_millis()).unwrap_or(0);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    if let Ok(value) = axum::http::HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

/// Counts every response by method, route pattern and status.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A control plane ready to serve: state assembled, database migrated, listeners bound.
pub struct Application {
    listener: TcpListener,
    /// `--metrics-listen`: `/metrics` is served there only.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    usage_retention_days: u32,
}

impl Application {
    /// Builds everything from `config`, reading secrets from the process environment.
    pub async fn build(config: &Config) -> anyhow::Result<(Self, Option<Bootstrapped>)> {
        Self::build_with(config, Arc::new(SystemClock), |name| {
            std::env::var(name).ok().map(SecretString::from)
        })
        .await
    }

    /// Builds everything with a given clock and environment (tests).
    pub async fn build_with(
        config: &Config,
        clock: Arc<dyn Clock>,
        env: impl Fn(&str) -> Option<SecretString>,
    ) -> anyhow::Result<(Self, Option<Bootstrapped>)> {
        let (state, source) = bootstrap::open(config, clock, env).await?;
        bootstrap::warn_if_misplaced(&source, config);
        let bootstrapped = bootstrap::first_start(&state, &config.org_name).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?,
            ),
            None => None,
        };
        Ok((
            Application {
                listener,
                metrics_listener,
                state,
                usage_retention_days: config.usage_retention_days,
            },
            bootstrapped,
        ))
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the bound address")
    }

    /// The metrics listener's bound address, when `/metrics` has its own.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics_listener
            .as_ref()
            .map(|listener| {
                listener
                    .local_addr()
                    .context("reading the metrics listener's address")
            })
            .transpose()
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves (and pushes changes to the registered edges, deletes usage events past the
    /// retention period, writes coalesced refusals to the audit log, delivers webhooks and
    /// deletes their settled history after 30 days, and serves `/metrics` on its
    /// own listener when it has one) until `shutdown` resolves, then lets in-flight requests
    /// finish and writes the refusals still held.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tasks, stopped) = tokio::sync::watch::channel(false);
        let pusher = replication::pusher::spawn(self.state.clone(), stopped.clone());
        let cleanup = usage::retention::spawn(
            self.state.clone(),
            self.usage_retention_days,
            stopped.clone(),
        );
        let refusals = audit::refusals::spawn(self.state.clone(), stopped.clone());
        let sign_ins = people::cleanup::spawn(self.state.clone(), stopped.clone());
        let deliveries = webhooks::delivery::spawn(self.state.clone(), stopped.clone());
        let webhook_history = webhooks::history::spawn(self.state.clone(), stopped.clone());
        let expiries = webhooks::expiry::spawn(self.state.clone(), stopped.clone());
        let commits = self.state.store.spawn_commit_listener(stopped.clone());
        // One shutdown signal for both listeners.
        let (stop_serving, serving_stopped) = tokio::sync::watch::channel(false);
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_serving.send(true);
        });
        let until_stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        };
        let (main_routes, metrics) = match self.metrics_listener {
            Some(listener) => {
                let server = axum::serve(listener, metrics_app(self.state.clone()))
                    .with_graceful_shutdown(until_stopped(serving_stopped.clone()));
                (
                    MetricsRoute::Separate,
                    Some(tokio::spawn(server.into_future())),
                )
            }
            None => (MetricsRoute::Included, None),
        };
        let served = axum::serve(
            self.listener,
            app_with(self.state.clone(), main_routes)
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(until_stopped(serving_stopped))
        .await
        .context("serving HTTP");
        signal.abort();
        let _ = stop_tasks.send(true);
        if let Some(mut metrics) = metrics
            && tokio::time::timeout(TASK_STOP, &mut metrics).await.is_err()
        {
            metrics.abort();
        }
        // The background tasks stop at once (in-flight pushes are dropped, edges pull what they
        // miss; an interrupted cleanup resumes at the next start; a delivery cut short is sent
        // again when its claim's lease ends).
        for mut task in [pusher, expiries, sign_ins, webhook_history]
            .into_iter()
            .chain(cleanup)
            .chain(deliveries)
            .chain(commits)
        {
            if tokio::time::timeout(TASK_STOP, &mut task).await.is_err() {
                task.abort();
            }
        }
        // The refusal flusher writes what it holds first (one transaction per organization).
        let mut refusals = refusals;
        if tokio::time::timeout(REFUSALS_STOP, &mut refusals)
            .await
            .is_err()
        {
            tracing::warn!("refused calls still held at shutdown were not all audited in time");
            refusals.abort();
        }
        served
    }

    /// Registers (or updates the URL of) each edge named by `serve --edge` / `KEYPLANE_EDGES`.
    pub async fn register_edges(
        &self,
        edges: &[replication::registry::EdgeSpec],
    ) -> anyhow::Result<()> {
        for edge in edges {
            replication::registry::validate(&edge.name, &edge.url, self.state.policy.local_dev)
                .with_context(|| format!("--edge {}", edge.name))?;
            self.state
                .store
                .register_edge(&edge.name, &edge.url, None, self.state.now())
                .await
                .with_context(|| format!("registering edge {}", edge.name))?;
            tracing::info!(edge = %edge.name, url = %edge.url, "edge registered");
        }
        Ok(())
    }
}

/// How long a background task is given to stop at shutdown.
const TASK_STOP: std::time::Duration = std::time::Duration::from_secs(1);
/// How long the refusal flusher is given to write what it holds at shutdown.
const REFUSALS_STOP: std::time::Duration = std::time::Duration::from_secs(10);

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
