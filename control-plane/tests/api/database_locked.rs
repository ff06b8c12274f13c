//! A SQLite file another program holds for writing (a `sqlite3` shell in the middle of a
//! transaction, a backup tool): a change waits for it as long as SQLite's busy timeout, then is
//! answered 503 `unavailable`, a retry being the right thing to do, and changes nothing; a
//! second writer of the same organization, waiting for its turn meanwhile, is answered the
//! same; reads go on. On PostgreSQL a lock wait the server gives up on (a `lock_timeout` an
//! operator set, a deadlock), a serialization failure and a session an administrator ended
//! are the same retryable refusal, each produced here on a real server, and a constraint
//! violation is not; writers queuing behind a row held elsewhere are `org_writers`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use keyplane_control_plane::store::StoreError;
use keyplane_control_plane::store::sql::Backend;
use serde_json::json;
use sqlx::Executor as _;

use crate::helpers::{default_config, drop_test_database, spawn_app_with, told_to_retry};

#[tokio::test]
async fn writers_of_a_sqlite_file_held_elsewhere_are_told_to_retry_and_change_nothing() {
    let app = spawn_app_with(Backend::Sqlite, default_config)
        .await
        .expect("SQLite is always available");
    let (_, record) = app
        .create_key(json!({"name": "contested", "environment": "live"}))
        .await;
    let path = format!("/v1/keys/{}", record["id"].as_str().expect("id"));

    // The test's own connection takes the file's write lock and keeps it.
    let mut holder = app.pool().acquire().await.expect("a connection");
    holder
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("the write lock");

    let app = Arc::new(app);
    let started = Instant::now();
    let writers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move { app.patch(&path, json!({"name": name})).await })
        })
        .collect();
    let read = app.get(&path).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    for writer in writers {
        told_to_retry(writer, Duration::from_secs(40)).await;
    }
    assert!(
        started.elapsed() >= Backend::Sqlite.acquire_timeout(),
        "answered after {:?}, before the busy timeout",
        started.elapsed()
    );

    holder.execute("ROLLBACK").await.expect("the lock released");
    let key = app.get(&path).await;
    assert_eq!(
        key.body["name"], "contested",
        "the refused changes made nothing"
    );
    let refused_audited = app
        .audit()
        .await
        .into_iter()
        .any(|record| record["action"] == "key_updated");
    assert!(!refused_audited, "no audit record of a refused change");
    let retried = app.patch(&path, json!({"name": "retried"})).await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    assert_eq!(app.get(&path).await.body["name"], "retried");
}

#[tokio::test]
async fn a_lock_wait_postgresql_gives_up_on_is_unavailable_not_a_fault() {
    let Some(app) = spawn_app_with(Backend::Postgres, default_config).await else {
        return;
    };
    let url = app.database_url.clone();
    let mut holder = app.pool().begin().await.expect("a transaction");
    sqlx::query("UPDATE orgs SET audit_seq = audit_seq")
        .execute(&mut *holder)
        .await
        .expect("the rows locked");
    // A session whose lock waits end after 50 ms, as a role with `lock_timeout` set has.
    let mut waiter = app.pool().acquire().await.expect("a connection");
    waiter
        .execute("SET lock_timeout = '50ms'")
        .await
        .expect("lock_timeout set");
    let refusal = sqlx::query("UPDATE orgs SET audit_seq = audit_seq")
        .execute(&mut *waiter)
        .await
        .expect_err("the lock wait gives up");
    let refusal = StoreError::from(refusal);
    assert!(matches!(refusal, StoreError::Unavailable(_)), "{refusal:?}");
    holder.rollback().await.expect("released");
    drop(waiter);
    drop(app);
    drop_test_database(&url).await;
}

/// The refusals `is_momentary` names, each produced on a real server: a deadlock, a
/// serialization failure and a connection an administrator ended are 503 material; a
/// constraint violation is not (it is what the statement asked for, and would be again).
#[tokio::test]
async fn postgresqls_momentary_refusals_are_unavailable_and_a_real_fault_is_not() {
    let Some(app) = spawn_app_with(Backend::Postgres, default_config).await else {
        return;
    };
    let url = app.database_url.clone();
    let pool = app.pool().clone();
    pool.execute("CREATE TABLE refusal_probe (id INT PRIMARY KEY, n INT NOT NULL)")
        .await
        .expect("probe table");
    pool.execute("INSERT INTO refusal_probe VALUES (1, 0), (2, 0)")
        .await
        .expect("probe rows");
    let momentary = |error: sqlx::Error| {
        let code = error
            .as_database_error()
            .and_then(|refusal| refusal.code().map(|code| code.into_owned()));
        let mapped = StoreError::from(error);
        assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        code
    };

    // 40P01: each transaction holds the row the other one wants.
    let mut first = pool.begin().await.expect("first");
    let mut second = pool.begin().await.expect("second");
    const LOCK_1: &str = "UPDATE refusal_probe SET n = n + 1 WHERE id = 1";
    const LOCK_2: &str = "UPDATE refusal_probe SET n = n + 1 WHERE id = 2";
    first.execute(LOCK_1).await.expect("row 1");
    second.execute(LOCK_2).await.expect("row 2");
    let (a, b) = tokio::join!(first.execute(LOCK_2), second.execute(LOCK_1));
    let deadlock = a.err().or(b.err()).expect("the server breaks the deadlock");
    assert_eq!(momentary(deadlock).as_deref(), Some("40P01"));
    drop((first, second));

    // 40001: two serializable transactions that each read what the other writes.
    let serializable = || async {
        let mut tx = pool.begin().await.expect("tx");
        tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await
            .expect("serializable");
        tx.execute("SELECT sum(n) FROM refusal_probe")
            .await
            .expect("read");
        tx
    };
    let (mut first, mut second) = (serializable().await, serializable().await);
    first
        .execute("UPDATE refusal_probe SET n = n + 1 WHERE id = 1")
        .await
        .expect("first write");
    let written = second
        .execute("UPDATE refusal_probe SET n = n + 1 WHERE id = 2")
        .await;
    first.commit().await.expect("first commits");
    let refusal = match written {
        Err(error) => error,
        Ok(_) => second.commit().await.expect_err("the second cannot commit"),
    };
    assert_eq!(momentary(refusal).as_deref(), Some("40001"));

    // 57P01: an administrator ends the session.
    let mut ended = pool.acquire().await.expect("a connection");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *ended)
        .await
        .expect("pid");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&pool)
        .await
        .expect("terminated");
    // The server sends its FATAL notice as it ends the session; let it arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = ended
        .execute("SELECT 1")
        .await
        .expect_err("the session has ended");
    assert_eq!(momentary(after).as_deref(), Some("57P01"));
    ended.detach();

    // 23505 is what the statement asked for: a fault of the caller, not a moment.
    let duplicate = pool
        .execute("INSERT INTO refusal_probe VALUES (1, 0)")
        .await
        .expect_err("a duplicate key");
    assert!(matches!(
        StoreError::from(duplicate),
        StoreError::Database(_)
    ));

    pool.execute("DROP TABLE refusal_probe")
        .await
        .expect("dropped");
    drop(pool);
    drop(app);
    drop_test_database(&url).await;
}
