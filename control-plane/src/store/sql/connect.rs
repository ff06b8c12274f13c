//! Opening the database: which backend a URL names, the pool with each backend's connection
//! settings (SQLite gets WAL, a busy timeout and foreign keys), and the migrations, one folder
//! per backend under `control-plane/migrations/`, applied at start-up (sqlx holds an advisory
//! lock while it migrates PostgreSQL, so instances starting together migrate once), and the
//! lock under which an instance makes the first organization ([`first_start_lock`]).

use std::str::FromStr as _;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};

use crate::store::StoreError;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend of a database URL, if supported.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// How long a call waits for a connection (and a writer for its organization's turn)
    /// before it fails as unavailable.
    pub fn acquire_timeout(self) -> Duration {
        match self {
            Backend::Sqlite => SQLITE_ACQUIRE_TIMEOUT,
            Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
        }
    }
}

/// How long a call waits for a SQLite connection, and a statement for the file's write lock
/// (SQLite's `busy_timeout`, set on every connection) before it fails as
/// [`StoreError::Unavailable`].
const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every SQLite connection is set to on opening.
static SQLITE_PRAGMAS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {}; \
         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        SQLITE_ACQUIRE_TIMEOUT.as_millis()
    )
});

/// How long a call waits for a PostgreSQL connection before it fails as
/// [`StoreError::Unavailable`] (the API's 503 `unavailable`). While the server cannot be
/// reached, sqlx retries the refused connects until this deadline, so it is also how long a
/// request takes to say the database is down (the fault suite cuts it off under load).
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` and applies pending migrations.
pub(super) async fn open(url: &str) -> Result<(AnyPool, Backend), StoreError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "unsupported database URL scheme in `{}` (use sqlite: or postgres:)",
            url.split(':').next().unwrap_or_default()
        ))
    })?;
    let options = AnyConnectOptions::from_str(url)?;
    let pool = match backend {
        Backend::Sqlite => {
            AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Backend::Sqlite.acquire_timeout())
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection.execute(SQLITE_PRAGMAS.as_str()).await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Backend::Postgres.acquire_timeout())
                .connect_with(options)
                .await?
        }
    };
    let migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator
        .run(&pool)
        .await
        .map_err(|error| StoreError::Corrupt(format!("applying migrations: {error}")))?;
    Ok((pool, backend))
}

/// The advisory lock key of the first start ("KEYPLANE" in ASCII, as an `i64`).
const FIRST_START_LOCK: i64 = 0x4b45_5950_4c41_4e45;

/// Holds PostgreSQL's advisory lock on a connection taken out of the pool: dropping it closes
/// that connection, which ends the session and so releases the lock, whatever path the first
/// start took (a pooled connection would keep the lock held).
struct AdvisoryLock(Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(connection.detach());
        }
    }
}

/// Waits for the first-start lock (PostgreSQL); nothing to wait for on SQLite.
pub(super) async fn first_start_lock(
    pool: &AnyPool,
    backend: Backend,
) -> Result<crate::store::FirstStartLock, StoreError> {
    match backend {
        Backend::Sqlite => Ok(Box::new(())),
        Backend::Postgres => {
            // The guard owns the connection before the wait begins: a caller that stops
            // waiting (a timeout, a shutdown) closes it, and with it the lock request, which
            // would otherwise be granted later to a pooled connection nobody releases.
            let mut guard = AdvisoryLock(Some(pool.acquire().await?));
            if let Some(connection) = guard.0.as_mut() {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(FIRST_START_LOCK)
                    .execute(&mut **connection)
                    .await?;
            }
            Ok(Box::new(guard))
        }
    }
}
