//! Opening the database: which backend a URL names, the pool with each backend's connection
//! settings (SQLite gets WAL, a busy timeout and foreign keys), and the migrations, one folder
//! per backend under `control-plane/migrations/`, applied at start-up.

use std::str::FromStr as _;
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
}

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
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                            )
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
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
