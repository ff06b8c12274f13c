//! The expiry scheduler checks each key again under its organization's lock: a key revoked, or
//! given another expiry, after the scheduler's look found it due and before its notice is
//! written, is not announced. PostgreSQL only: there the test holds the organization's row as
//! another instance in the middle of that change would, makes the change in the same
//! transaction, and lets it commit once the scheduler waits for the row; the look, made
//! meanwhile, saw the key as it was.

use std::sync::Arc;

use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::webhooks::expiry;
use keyplane_shared::ids::KeyId;
use serde_json::json;

use crate::helpers::{default_config, drop_test_database, spawn_app_with, until};

#[tokio::test]
async fn a_key_revoked_or_given_another_expiry_after_the_look_is_not_announced() {
    let Some(app) = spawn_app_with(Backend::Postgres, default_config).await else {
        return;
    };
    let url = app.database_url.clone();
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring"]}),
    )
    .await;
    let mut keys = Vec::new();
    for name in ["revoked meanwhile", "extended meanwhile"] {
        let (_, record) = app
            .create_key(json!({"name": name, "environment": "live", "expires": "1h"}))
            .await;
        let id = KeyId::parse(record["id"].as_str().expect("id")).expect("a key id");
        keys.push(id.to_bytes().to_vec());
    }
    let now = app.state.now().as_millis();
    let mut holder = app.hold_org_rows().await;
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
        .bind(now)
        .bind(keys[0].clone())
        .execute(&mut *holder)
        .await
        .expect("revoked");
    sqlx::query("UPDATE api_keys SET expires_at = expires_at + $1 WHERE id = $2")
        .bind(30 * 86_400_000_i64)
        .bind(keys[1].clone())
        .execute(&mut *holder)
        .await
        .expect("extended");

    let app = Arc::new(app);
    let look = tokio::spawn({
        let app = app.clone();
        async move { expiry::announce_due(&app.state).await }
    });
    // The look found both keys due (the changes are not committed) and waits for the row.
    until("the scheduler waits for the organization's row", || async {
        app.lock_waiters().await >= 1
    })
    .await;
    holder.commit().await.expect("the changes committed");
    let announced = look.await.expect("the look").expect("no store error");
    assert_eq!(
        announced, 0,
        "announced a key that had changed since the look"
    );
    assert!(app.take_due_events().await.is_empty());
    let notices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM key_notices")
        .fetch_one(app.pool())
        .await
        .expect("notices");
    assert_eq!(notices, 0, "a notice recorded for a key not announced");
    drop(app);
    drop_test_database(&url).await;
}
