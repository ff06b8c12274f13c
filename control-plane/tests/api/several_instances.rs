//! Several instances on one PostgreSQL database.
//!
//! - Starting at once on an empty database (as a new user tries it: two `keyplane serve`
//!   started together): the migrations run once and exactly one of them creates the first
//!   organization and prints its admin key; the others find it. The first-start lock is
//!   released when dropped, whatever became of the start.
//! - A change committed through one instance is announced in every other instance's feed
//!   heads at once (`LISTEN`/`NOTIFY`), so their pushers and delivery workers wake without
//!   waiting for a tick.

use std::sync::Arc;
use std::time::Duration;

use keyplane_control_plane::state::SystemClock;
use keyplane_control_plane::{Application, Config};

use crate::fixed_secrets::secrets_env;
use crate::helpers::{
    drop_test_database, fresh_postgres_database, postgres_available, test_config,
};

fn config(dir: &std::path::Path, database_url: &str) -> Config {
    test_config(dir, database_url, "Default organization")
}

#[tokio::test]
async fn instances_starting_together_on_an_empty_database_create_one_organization() {
    if !postgres_available().await {
        return;
    }
    let url = fresh_postgres_database().await;
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let configs: Vec<Config> = dirs.iter().map(|dir| config(dir.path(), &url)).collect();
    // Each on its own task, as separate processes would be.
    let starts: Vec<_> = configs
        .into_iter()
        .map(|config| {
            tokio::spawn(async move {
                Application::build_with(&config, Arc::new(SystemClock), secrets_env)
                    .await
                    .map(|(application, bootstrapped)| (application, bootstrapped.is_some()))
            })
        })
        .collect();
    let mut first_starts = 0;
    let mut applications = Vec::new();
    for start in starts {
        let (application, bootstrapped) = start.await.expect("joined").expect("starts");
        first_starts += usize::from(bootstrapped);
        applications.push(application);
    }
    assert_eq!(
        first_starts, 1,
        "instances that created the first organization"
    );
    let organizations = applications[0]
        .state()
        .store
        .org_count()
        .await
        .expect("count");
    assert_eq!(organizations, 1);

    // The lock is one: while one instance holds it another waits; dropped, it is free at once
    // (its connection is closed, not returned to the pool still holding it).
    let (one, two) = (
        &applications[0].state().store,
        &applications[1].state().store,
    );
    let held = one.first_start_lock().await.expect("lock");
    let waited = tokio::time::timeout(Duration::from_millis(300), two.first_start_lock()).await;
    assert!(
        waited.is_err(),
        "a second instance took the lock while it was held"
    );
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(5), two.first_start_lock())
        .await
        .expect("the lock is free once dropped")
        .expect("lock");
    drop(again);
    // The same instance can take it again too: its pool kept no connection holding it.
    for _ in 0..20 {
        let lock = tokio::time::timeout(Duration::from_secs(5), one.first_start_lock())
            .await
            .expect("free")
            .expect("lock");
        drop(lock);
        tokio::time::timeout(Duration::from_secs(5), two.first_start_lock())
            .await
            .expect("free for the other instance")
            .expect("lock");
    }
    drop(applications);
    drop_test_database(&url).await;
}

#[tokio::test]
async fn a_change_committed_through_one_instance_wakes_the_other_at_once() {
    if !postgres_available().await {
        return;
    }
    let url = fresh_postgres_database().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let (a, first) = Application::build_with(
        &config(dir_a.path(), &url),
        Arc::new(SystemClock),
        secrets_env,
    )
    .await
    .expect("A starts");
    let admin = first.expect("A made the first organization").admin_key;
    let (b, _) = Application::build_with(
        &config(dir_b.path(), &url),
        Arc::new(SystemClock),
        secrets_env,
    )
    .await
    .expect("B starts");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = b
        .state()
        .store
        .spawn_commit_listener(stopped)
        .expect("PostgreSQL has a commit listener");
    let mut heads = b.state().store.feed_heads();
    let before = *heads.borrow_and_update();
    // B's listener is connected once a first announcement gets through: keep committing
    // through A until B hears one (each create is a change; the first may beat the LISTEN).
    let app_a = keyplane_control_plane::app(a.state().clone());
    let mut heard = None;
    for n in 0..20 {
        let request = axum::http::Request::post("/v1/keys")
            .header("x-api-key", admin.expose_secret())
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({"name": format!("through A {n}"), "environment": "live"})
                    .to_string(),
            ))
            .expect("request");
        let answer = tower::ServiceExt::oneshot(app_a.clone(), request)
            .await
            .expect("infallible");
        assert_eq!(answer.status(), axum::http::StatusCode::CREATED);
        let committed = a.state().store.feed_head().await.expect("head");
        let started = std::time::Instant::now();
        if tokio::time::timeout(
            Duration::from_millis(500),
            heads.wait_for(|head| *head >= committed),
        )
        .await
        .is_ok()
        {
            heard = Some((committed, started.elapsed()));
            break;
        }
    }
    let (committed, after) = heard.expect("B never heard a commit made through A");
    assert!(committed > before);
    // B's own store committed nothing: only the listener can have moved its head.
    assert!(after < Duration::from_millis(500), "{after:?}");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("the listener stops on shutdown")
        .expect("joined");
    drop((a, b));
    drop_test_database(&url).await;
}
