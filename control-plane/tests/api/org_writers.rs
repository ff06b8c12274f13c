//! One organization's writers queue inside the instance, not in its connection pool: while
//! another connection holds the organization's row (as another instance in the middle of a
//! change does), twenty changes to it wait with one connection between them, and the
//! instance's other calls go on. The one waiting for the row gives up after the lock timeout,
//! and one kept waiting for its turn longer than it would wait for a connection gives up
//! then: both are answered 503 `unavailable` and change nothing. PostgreSQL only: there a row
//! lock held elsewhere is what makes writers wait (SQLite serves one instance per file; its
//! side is `database_locked`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use keyplane_control_plane::store::sql::Backend;
use serde_json::json;

use crate::helpers::{
    TestApp, default_config, drop_test_database, spawn_app_with, told_to_retry, until,
};

/// Writers sent at once: more than the pool's 16 connections.
const WRITERS: usize = 20;

/// A control plane on a fresh PostgreSQL database, its database URL (to drop it after), and
/// the id of a key to change; `None` when PostgreSQL is unavailable outside CI.
async fn app_with_a_key() -> Option<(TestApp, String, String)> {
    let app = spawn_app_with(Backend::Postgres, default_config).await?;
    let url = app.database_url.clone();
    let (_, record) = app
        .create_key(json!({"name": "contested", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    Some((app, url, id))
}

#[tokio::test]
async fn writers_of_one_organization_wait_for_its_row_without_taking_the_pool() {
    let Some((app, url, id)) = app_with_a_key().await else {
        return;
    };

    let holder = app.hold_org_rows().await;

    let app = Arc::new(app);
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let app = app.clone();
            let path = format!("/v1/keys/{id}");
            tokio::spawn(async move { app.patch(&path, json!({"name": format!("n{n}")})).await })
        })
        .collect();
    until("a writer waits for the organization's row", || async {
        app.lock_waiters().await >= 1
    })
    .await;
    // Time for the other writers to come as far as they can.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.lock_waiters().await,
        1,
        "one connection waits for the row; the other writers wait for their turn"
    );
    assert!(writers.iter().all(|writer| !writer.is_finished()));

    // A read goes on meanwhile. Had every writer taken a connection to wait for the row, the
    // pool's 16 would all be waiting, and this read would fail after the acquire timeout.
    let read = app.get("/v1/keys").await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);

    holder.commit().await.expect("the rows released");
    for writer in writers {
        let reply = writer.await.expect("writer task");
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let updates = app
        .audit()
        .await
        .into_iter()
        .filter(|r| r["action"] == "key_updated" && r["target_key_id"] == id.as_str())
        .count();
    assert_eq!(updates, WRITERS, "every change made and audited once");
    drop(app);
    drop_test_database(&url).await;
}

#[tokio::test]
async fn writers_kept_from_a_row_held_elsewhere_past_the_timeouts_are_told_to_retry() {
    let Some((app, url, id)) = app_with_a_key().await else {
        return;
    };
    let path = format!("/v1/keys/{id}");
    let holder = app.hold_org_rows().await;
    let app = Arc::new(app);
    let patch = |name: &'static str| {
        let (app, path) = (app.clone(), path.clone());
        tokio::spawn(async move { app.patch(&path, json!({"name": name})).await })
    };
    let started = std::time::Instant::now();
    let first = patch("first");
    until("the first writer waits for the row", || async {
        app.lock_waiters().await == 1
    })
    .await;
    // The first waits for the row for at most the lock timeout, the others for their turn
    // behind it (at most the acquire timeout), then for the row in turn.
    let others = [patch("second"), patch("third")];
    for writer in std::iter::once(first).chain(others) {
        // Without the bounds a writer would wait as long as the row is held.
        told_to_retry(writer, Duration::from_secs(30)).await;
        assert!(
            app.lock_waiters().await <= 1,
            "one connection waits at most"
        );
    }
    assert!(
        started.elapsed() >= Backend::Postgres.acquire_timeout(),
        "answered after {:?}",
        started.elapsed()
    );
    holder.commit().await.expect("the rows released");
    let key = app.get(&path).await;
    assert_eq!(
        key.body["name"], "contested",
        "the refused changes made nothing"
    );
    let updates = app
        .audit()
        .await
        .into_iter()
        .filter(|r| r["action"] == "key_updated")
        .count();
    assert_eq!(updates, 0, "no audit record of a refused change");
    let retried = app.patch(&path, json!({"name": "retried"})).await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    drop(app);
    drop_test_database(&url).await;
}
