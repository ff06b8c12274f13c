//! A PostgreSQL database of its own for one end-to-end test, on the machine's server
//! (127.0.0.1:5432, user `postgres`, trust auth), made and dropped with `psql`.
//!
//! Where no server answers, a test skips with the reason printed, unless CI or
//! `KEYPLANE_E2E_REQUIRED` demand everything run ([`crate::required`]): then it fails.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The machine's PostgreSQL server.
pub const SERVER: &str = "127.0.0.1:5432";

/// A fresh, empty database; dropped (with whatever is still connected) with the value.
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates one; `None` (after printing why) when no server answers and nothing demands it.
    pub fn create() -> Result<Option<Self>> {
        if let Err(error) = psql("test", "SELECT 1") {
            if crate::required() {
                return Err(error.context("PostgreSQL at 127.0.0.1:5432 is required here"));
            }
            eprintln!("skipped: no PostgreSQL at {SERVER} ({error:#})");
            return Ok(None);
        }
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("CSPRNG: {error}"))?;
        let suffix: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let name = format!("keyplane_e2e_{suffix}");
        psql("test", &format!("CREATE DATABASE {name}"))?;
        Ok(Some(Self { name }))
    }

    /// Its URL on the server itself.
    pub fn url(&self) -> String {
        self.url_via(
            SERVER
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 5432).into()),
        )
    }

    /// Its URL through `address` (a proxy in front of the server).
    pub fn url_via(&self, address: SocketAddr) -> String {
        format!("postgres://postgres@{address}/{}", self.name)
    }

    /// The server's address, for a proxy to forward to.
    pub fn server() -> Result<SocketAddr> {
        SERVER.parse().context("PostgreSQL's address")
    }

    /// One statement on this database, its rows as `psql -At` prints them.
    pub fn query(&self, sql: &str) -> Result<String> {
        psql(&self.name, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(error) = psql(
            "test",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("dropping {}: {error:#}", self.name);
        }
    }
}

/// Runs `sql` on `database` with `psql -At`; its output.
fn psql(database: &str, sql: &str) -> Result<String> {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
