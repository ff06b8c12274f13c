//! Attempts recorded together take their endpoints' rows in one order (by id), whatever order
//! they ended in: two instances recording attempts of the same two endpoints at once must not
//! deadlock. PostgreSQL only (SQLite has one writer at a time): the test holds one endpoint's
//! row, has one recording wait for it with that endpoint's attempt first, and starts another
//! with the other endpoint's attempt first; both must commit once the row is let go. Recorded
//! in the order given, the second would lock the other endpoint, the first would then wait for
//! it while holding the held one, and PostgreSQL would abort one of them as a deadlock.

use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::store::{Attempt, ClaimedDelivery, NextStep, StoreError};
use keyplane_shared::Timestamp;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::helpers::webhooks::{NEVER_DISABLING, attempt};
use crate::helpers::{TestApp, default_config, drop_test_database, spawn_app_with, until};

fn delivered(app: &TestApp, delivery: ClaimedDelivery) -> (ClaimedDelivery, Attempt, NextStep) {
    let made = attempt(app.state.now(), 204, "delivered");
    (delivery, made, NextStep::Delivered)
}

/// Records `attempts` in a task of its own, which may wait for locks.
fn record_aside(
    app: &TestApp,
    attempts: Vec<(ClaimedDelivery, Attempt, NextStep)>,
) -> JoinHandle<Result<Vec<bool>, StoreError>> {
    let store = app.store.clone();
    tokio::spawn(async move { store.record_attempts(&attempts, NEVER_DISABLING).await })
}

#[tokio::test]
async fn recordings_of_the_same_endpoints_in_opposite_orders_both_commit() {
    let Some(app) = spawn_app_with(Backend::Postgres, default_config).await else {
        return;
    };
    let url = app.database_url.clone();
    for n in 0..2 {
        let made = app
            .post(
                "/v1/webhooks",
                json!({"url": format!("http://127.0.0.1:9/{n}"), "events": ["key.created"]}),
            )
            .await;
        assert!(made.status.is_success(), "{:?}", made.body);
    }
    for name in ["first", "second"] {
        app.create_key(json!({"name": name, "environment": "live"}))
            .await;
    }
    let now = app.state.now();
    let mut claimed = app
        .store
        .claim_deliveries(now, Timestamp(now.as_millis() + 60_000), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 4, "two events for each of two endpoints");
    claimed.sort_by_key(|delivery| delivery.endpoint.id.to_bytes());
    let held = claimed[0].endpoint.id;
    let (mut of_held, mut of_other): (Vec<_>, Vec<_>) = claimed
        .into_iter()
        .partition(|delivery| delivery.endpoint.id == held);
    let mut holder = app.pool().begin().await.expect("a transaction");
    sqlx::query("SELECT id FROM webhook_endpoints WHERE id = $1 FOR UPDATE")
        .bind(held.to_bytes().to_vec())
        .execute(&mut *holder)
        .await
        .expect("the endpoint's row held");
    // The held endpoint's attempt first: this recording waits for its row.
    let first = vec![
        delivered(&app, of_held.pop().expect("one")),
        delivered(&app, of_other.pop().expect("one")),
    ];
    let first = record_aside(&app, first);
    until("the first recording waits for the held row", || async {
        app.lock_waiters().await == 1
    })
    .await;
    // The other endpoint's attempt first: recorded in this order, it would lock that
    // endpoint and then wait behind the first recording for the held one.
    let second = vec![
        delivered(&app, of_other.pop().expect("the other")),
        delivered(&app, of_held.pop().expect("the other")),
    ];
    let second = record_aside(&app, second);
    until("the second recording waits too", || async {
        app.lock_waiters().await == 2
    })
    .await;
    holder.commit().await.expect("the row let go");
    let first = first.await.expect("the first recording ran");
    let second = second.await.expect("the second recording ran");
    assert!(first.is_ok(), "first: {first:?}");
    assert!(second.is_ok(), "second: {second:?}");
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(recorded, 4);
    drop(app);
    drop_test_database(&url).await;
}
