//! `TestApp`: a control plane on a fresh database (a temporary SQLite file, or a new PostgreSQL
//! database), driven through its router without a socket, with a clock the test moves.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::fixed_secrets::secrets_env;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use keyplane_control_plane::state::{AppState, Clock};
use keyplane_control_plane::store::Store;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::{Application, Config};
use keyplane_shared::Timestamp;
use keyplane_shared::sync;
use serde_json::{Value, json};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use tower::ServiceExt as _;

pub mod client;
pub mod feed;
pub mod mail;
pub mod pages;
pub mod people;
pub mod store;
pub mod usage;
pub mod webhooks;

/// The PostgreSQL server tests use (trust auth, user `postgres`; CI provides it, see README.md).
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long [`until`] waits for a condition before failing the test.
pub const UNTIL_DEADLINE: Duration = Duration::from_secs(20);

/// Awaits a change sent while the database was held, giving up after `bound` (without it a
/// writer could wait as long as the hold, which shows as a hang, not a failure), and checks
/// it was told to retry: 503 `unavailable`.
pub async fn told_to_retry(writer: tokio::task::JoinHandle<Reply>, bound: Duration) {
    let reply = tokio::time::timeout(bound, writer)
        .await
        .expect("answered while the database is still held")
        .expect("writer task");
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{:?}",
        reply.body
    );
}

/// Starts `count` calls at once (`call(n)` for each `n`), and waits until the first of them
/// answers 201: the calls still on their way then are what a revocation or removal made at that
/// moment must stop. Their tasks, to await.
pub async fn creates_under_way<F, Fut>(count: usize, call: F) -> Vec<tokio::task::JoinHandle<Reply>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let first_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let calls = (0..count)
        .map(|n| {
            let (created, first_tx) = (call(n), first_tx.clone());
            tokio::spawn(async move {
                let reply = created.await;
                if reply.status == StatusCode::CREATED
                    && let Some(tx) = first_tx.lock().expect("lock").take()
                {
                    let _ = tx.send(());
                }
                reply
            })
        })
        .collect();
    // Only the calls hold the sender now: if none answers 201, the wait ends with them.
    drop(first_tx);
    first_rx.await.expect("a first create answered 201");
    calls
}

/// Polls `check` every 10 ms until it holds; fails the test, naming `what`, if it does not
/// within [`UNTIL_DEADLINE`]. The one way API tests wait for background work.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + UNTIL_DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {UNTIL_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The start of every test's clock.
pub const T0: Timestamp = Timestamp(1_800_000_000_000);

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A running control plane and what a test needs to talk to it.
pub struct TestApp {
    /// Which database.
    pub backend: Backend,
    /// The router's state.
    pub state: AppState,
    /// The store, through the trait the application uses.
    pub store: Arc<dyn Store>,
    /// A pool of the test's own on the same database, to inspect it with raw SQL.
    pool: AnyPool,
    /// The test's clock.
    pub clock: Arc<ManualClock>,
    /// Its admin key (`admin:full`).
    pub admin_key: String,
    /// The first owner's one-time setup link.
    pub setup_link: String,
    /// Keeps the data directory alive.
    pub data_dir: tempfile::TempDir,
    /// The database URL.
    pub database_url: String,
    /// The application, not yet serving (tests that need a socket take it).
    pub application: Option<Application>,
}

/// A response: status, headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `body.error.code`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Whether PostgreSQL tests must run: always in CI, else when the server answers.
pub async fn postgres_available() -> bool {
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await
    .is_ok_and(|connected| connected.is_ok());
    if !reachable && std::env::var_os("CI").is_some() {
        panic!("CI is set but PostgreSQL at 127.0.0.1:5432 is not reachable");
    }
    if !reachable {
        eprintln!("skipping: no PostgreSQL at 127.0.0.1:5432 and CI is not set");
    }
    reachable
}

/// Prefix of every test database's name.
const TEST_DATABASE_PREFIX: &str = "keyplane_test_";

async fn postgres_admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(POSTGRES_ADMIN_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432")
}

/// Drops test databases an earlier run left behind (a failed test keeps its database for
/// inspection until the next run). Runs once per test binary, before any test creates one.
/// Without `FORCE`, and ignoring failures: a database still connected belongs to a run going on
/// at the same time (another checkout, CI next to a developer), which must not lose it.
async fn drop_leftover_databases() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let admin = postgres_admin().await;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'keyplane\\_test\\_%'",
        )
        .fetch_all(&admin)
        .await
        .expect("list databases");
        for name in names {
            use sqlx::Executor as _;
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .await;
        }
        admin.close().await;
    })
    .await;
}

async fn drop_database(admin: &sqlx::PgPool, name: &str) {
    use sqlx::Executor as _;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .expect("drop database");
}

/// Drops a PostgreSQL test's database once the test passed (`WITH (FORCE)` ends any
/// connection the test's pool still holds).
pub async fn drop_test_database(url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    assert!(
        name.starts_with(TEST_DATABASE_PREFIX),
        "only test databases are dropped"
    );
    let admin = postgres_admin().await;
    drop_database(&admin, name).await;
    admin.close().await;
}

/// A fresh, empty PostgreSQL database for one test.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Executor as _;
    drop_leftover_databases().await;
    let admin = postgres_admin().await;
    let name = format!(
        "keyplane_test_{}",
        keyplane_shared::ids::KeyId::generate().expect("CSPRNG")
    )
    .to_lowercase();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    admin.close().await;
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// The tests' configuration: any free port, local development, the first organization named
/// `org_name`.
pub fn test_config(data_dir: &std::path::Path, database_url: &str, org_name: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(database_url.to_owned()),
        key_prefix: Default::default(),
        org_name: org_name.into(),
        usage_retention_days: 30,
        metrics_listen: None,
        max_rate_limit: Default::default(),
        trusted_proxies: Default::default(),
        local_dev: true,
        people: Default::default(),
        github_scanning_keys: None,
    }
}

/// Leaves the test configuration as it is.
pub fn default_config(_: &mut Config) {}

/// Starts a control plane on `backend`, with the test configuration changed by `configure`
/// first ([`default_config`] changes nothing); `None` when PostgreSQL is unavailable outside CI.
pub async fn spawn_app_with(backend: Backend, configure: fn(&mut Config)) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = match backend {
        Backend::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            data_dir.path().join("keyplane.db").display()
        ),
        Backend::Postgres => {
            if !postgres_available().await {
                return None;
            }
            fresh_postgres_database().await
        }
    };
    let mut config = test_config(data_dir.path(), &database_url, "Acme");
    configure(&mut config);
    let clock = Arc::new(ManualClock(AtomicI64::new(T0.as_millis())));
    let (application, bootstrapped) = Application::build_with(&config, clock.clone(), secrets_env)
        .await
        .expect("application builds");
    let first = bootstrapped.expect("an empty database bootstraps an organization");
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .expect("a test pool on the database");
    Some(TestApp {
        backend,
        state: application.state().clone(),
        store: application.state().store.clone(),
        pool,
        clock,
        admin_key: first.admin_key.expose_secret().to_owned(),
        setup_link: first.setup_link.clone(),
        data_dir,
        database_url,
        application: Some(application),
    })
}

impl TestApp {
    /// The test's own pool on the application's database, for raw-SQL inspection.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The id of the application's one organization (the first start's).
    pub async fn only_org_id(&self) -> keyplane_shared::ids::OrgId {
        use sqlx::Row as _;
        let org = sqlx::query("SELECT id FROM orgs")
            .fetch_one(self.pool())
            .await
            .expect("the organization")
            .get::<Vec<u8>, _>(0);
        keyplane_shared::ids::OrgId::from_bytes(org.try_into().expect("16 bytes"))
    }
}

/// A feed answer to a GET signed with the edge secret: the request's nonce and the raw answer.
pub struct FeedAnswer {
    /// The nonce the request was signed with (its answer is signed for it).
    pub nonce: [u8; sync::NONCE_LEN],
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl FeedAnswer {
    /// The value of header `name` (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// Checks the answer's signature as if it answered the request that carried `nonce`.
    pub fn verify_for(
        &self,
        app: &TestApp,
        nonce: &[u8; sync::NONCE_LEN],
    ) -> Result<(), sync::SyncAuthError> {
        let signed_body: &[u8] = if self.status == StatusCode::OK {
            &self.body
        } else {
            &[]
        };
        sync::verify_response(
            &app.state.edge_secret,
            self.headers
                .get(sync::RESPONSE_SIGNATURE_HEADER)
                .and_then(|value| value.to_str().ok()),
            app.state.now().as_millis() / 1000,
            nonce,
            &sync::SignedResponse {
                status: self.status.as_u16(),
                fields: sync::SignedResponse::fields_from(|name| {
                    self.headers.get(name).and_then(|value| value.to_str().ok())
                }),
                body: signed_body,
            },
        )
    }
}

impl TestApp {
    /// `GET path` signed with the edge secret at the test clock's time, as an edge pulls.
    pub async fn signed_feed(&self, path: &str) -> FeedAnswer {
        let now = self.state.now().as_millis() / 1000;
        let (request, nonce) = self.signed_get_request(path, path, now);
        let response = keyplane_control_plane::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        FeedAnswer {
            nonce,
            status,
            headers,
            body,
        }
    }

    /// Sends one request through the router.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("valid request");
        self.send(request).await
    }

    /// Sends a prepared request through the router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = keyplane_control_plane::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET` with the admin key.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.admin_key), None)
            .await
    }

    /// `POST` JSON with the admin key.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.admin_key), Some(body))
            .await
    }

    /// `PATCH` JSON with the admin key.
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(&self.admin_key), Some(body))
            .await
    }

    /// Creates a key with the admin key; returns (full key, record).
    pub async fn create_key(&self, body: Value) -> (String, Value) {
        let reply = self.post("/v1/keys", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let key = reply.body["key"].as_str().expect("full key").to_owned();
        (key, reply.body["record"].clone())
    }

    /// Creates `count` keys with the most scopes, each as long as allowed: their changes take
    /// some 8.4 KB each (an ordinary key's some 60 bytes).
    pub async fn create_keys_with_the_most_scopes(&self, count: usize) {
        let scopes: Vec<String> = (0..keyplane_shared::scope::MAX_SCOPES)
            .map(|n| format!("{}{n:03}:{}", "r".repeat(61), "a".repeat(64)))
            .collect();
        for n in 0..count {
            self.create_key(
                json!({"name": format!("k{n}"), "environment": "live", "scopes": scopes}),
            )
            .await;
        }
    }

    /// The organization's audit records, oldest first.
    pub async fn audit(&self) -> Vec<Value> {
        let reply = self.get("/v1/audit?limit=200").await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let mut records = reply.body["data"].as_array().expect("data").clone();
        records.reverse();
        records
    }
}

/// Runs each listed test on SQLite and on PostgreSQL: `backends!(name, ...)` expects
/// `async fn name(app: TestApp)` in scope. A PostgreSQL test's database is dropped when the test
/// passes. `backends!(config = f; name, ...)` changes the configuration with `fn f(&mut Config)`
/// (in the same module) first.
#[macro_export]
macro_rules! backends {
    ($($test:ident),* $(,)?) => {
        $crate::backends!(@with $crate::helpers::default_config; $($test),*);
    };
    (config = $configure:ident; $($test:ident),* $(,)?) => {
        $crate::backends!(@with super::$configure; $($test),*);
    };
    (@with $configure:path; $($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::helpers::spawn_app_with(keyplane_control_plane::store::sql::Backend::Sqlite, $configure)
                        .await
                        .expect("SQLite is always available");
                    super::$test(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(app) = $crate::helpers::spawn_app_with(keyplane_control_plane::store::sql::Backend::Postgres, $configure).await {
                        let url = app.database_url.clone();
                        super::$test(app).await;
                        $crate::helpers::drop_test_database(&url).await;
                    }
                }
            )*
        }
    };
}
