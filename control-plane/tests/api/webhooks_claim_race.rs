//! Instances claiming at the same moment cannot together give an endpoint more than its
//! places. PostgreSQL only (SQLite has one writer at a time): the test holds, as another
//! instance's claim would while it runs, the 32 oldest due deliveries of an endpoint with 40
//! due; a claim must skip them without taking the 8 after them in their stead (the held ones
//! fill the endpoint's places), and must not wait for them.

use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::store::webhooks::ENDPOINT_IN_FLIGHT;
use keyplane_shared::Timestamp;
use serde_json::json;

use crate::helpers::{TestApp, default_config, drop_test_database, spawn_app_with};

/// A claim of 32 from `app` now, with a minute's lease.
async fn claim(app: &TestApp) -> usize {
    let now = app.state.now();
    app.store
        .claim_deliveries(now, Timestamp(now.as_millis() + 60_000), 32)
        .await
        .expect("claim")
        .len()
}

#[tokio::test]
async fn a_claim_does_not_replace_deliveries_another_claim_holds() {
    let Some(app) = spawn_app_with(Backend::Postgres, default_config).await else {
        return;
    };
    let url = app.database_url.clone();
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["key.created"]}),
        )
        .await;
    assert!(made.status.is_success(), "{:?}", made.body);
    let share = ENDPOINT_IN_FLIGHT as i64;
    for n in 0..share + 8 {
        app.create_key(json!({"name": format!("k{n}"), "environment": "live"}))
            .await;
    }
    // Another instance's claim, in the middle of taking the endpoint's share.
    let mut holder = app.pool().begin().await.expect("a transaction");
    let held = sqlx::query(
        "SELECT event_id FROM webhook_deliveries ORDER BY next_attempt_at, event_id \
         LIMIT $1 FOR UPDATE",
    )
    .bind(share)
    .fetch_all(&mut *holder)
    .await
    .expect("the share held");
    assert_eq!(held.len() as i64, share);
    let taken = tokio::time::timeout(std::time::Duration::from_secs(10), claim(&app))
        .await
        .expect("the claim skips held rows rather than waiting for them");
    assert_eq!(
        taken, 0,
        "the 8 after the held share were taken in its stead"
    );
    holder.rollback().await.expect("let go");
    assert_eq!(claim(&app).await as i64, share, "the share, once let go");
    assert_eq!(claim(&app).await, 0, "no more while the share is in flight");
    drop(app);
    drop_test_database(&url).await;
}
