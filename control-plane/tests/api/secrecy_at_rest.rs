//! No plaintext key in the database, in the logs, or in error messages.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use keyplane_control_plane::store::sql::Backend;
use serde_json::json;
use sqlx::Row as _;

use keyplane_shared::sync::hex;

use crate::backends;
use crate::helpers::TestApp;

backends!(keys_never_reach_the_database_or_the_logs);

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn keys_never_reach_the_database_or_the_logs(app: TestApp) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut keys = vec![app.admin_key.clone()];
    for env in ["live", "test"] {
        let (key, record) = app
            .create_key(json!({"name": format!("{env} key"), "environment": env, "scopes": ["api-keys:manage"]}))
            .await;
        let id = record["id"].as_str().expect("id").to_owned();
        keys.push(key.clone());
        // Use it, fail with it, rotate it: every path that touches a key.
        app.call(Method::GET, "/v1/keys", Some(&key), None).await;
        let mut wrong = key.clone();
        wrong.push('x');
        app.call(Method::GET, "/v1/keys", Some(&wrong), None).await;
        let rotated = app
            .post(
                &format!("/v1/keys/{id}/rotate"),
                json!({"grace_seconds": 60}),
            )
            .await;
        keys.push(rotated.body["key"].as_str().expect("successor").to_owned());
    }
    let revoked = app
        .post(
            "/v1/keys/key_0000000000000000000000/revoke",
            json!({"reason": "other"}),
        )
        .await;
    assert_eq!(revoked.status, 404);

    let mut stored = String::new();
    match app.backend {
        Backend::Sqlite => {
            sqlx::query("PRAGMA wal_checkpoint(FULL)")
                .execute(app.pool())
                .await
                .expect("checkpoint");
            for entry in std::fs::read_dir(app.data_dir.path()).expect("data dir") {
                let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
                stored.push_str(&String::from_utf8_lossy(&bytes));
                stored.push_str(&hex(&bytes));
            }
        }
        Backend::Postgres => {
            for table in ["orgs", "api_keys", "audit_log", "changes"] {
                let sql = format!("SELECT t::text FROM {table} t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(app.pool())
                    .await
                    .expect("dump")
                {
                    stored.push_str(&row.get::<String, _>(0));
                }
            }
        }
    }
    assert!(stored.len() > 1000, "the dump is not empty");
    drop(_guard);
    let logs =
        String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
    assert!(logs.contains("/v1/keys"), "the capture saw the requests");
    for key in &keys {
        let body = &key[key.len() - 38..];
        for (what, haystack) in [("database", &stored), ("logs", &logs)] {
            assert!(!haystack.contains(body), "a key's secret is in the {what}");
            assert!(
                !haystack.contains(&hex(body.as_bytes())),
                "a key's secret (hex) is in the {what}"
            );
        }
    }
    let _ = std::io::stderr().flush();
}
