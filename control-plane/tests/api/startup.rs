//! Several instances starting at once on one empty PostgreSQL database (as a new user tries
//! it: two `keyplane serve` started together): the migrations run once and exactly one of
//! them creates the first organization and prints its admin key; the others find it. The
//! first-start lock is released when dropped, whatever became of the start.

use std::sync::Arc;
use std::time::Duration;

use keyplane_control_plane::state::SystemClock;
use keyplane_control_plane::{Application, Config};

use crate::fixed_secrets::secrets_env;
use crate::helpers::{drop_test_database, fresh_postgres_database, postgres_available};

fn config(dir: &std::path::Path, database_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        database_url: Some(database_url.to_owned()),
        key_prefix: Default::default(),
        org_name: "Default organization".into(),
        usage_retention_days: 30,
        metrics_listen: None,
        max_rate_limit: Default::default(),
        local_dev: true,
        people: Default::default(),
        github_scanning_keys: None,
    }
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
