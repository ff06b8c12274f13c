//! Lifecycle rules: a rotated or expired key cannot be edited back to life, a rotation that
//! cannot happen is refused before it spends an Argon2id hash, and a rotation's successor lives
//! as long as its predecessor did (from the rotation) unless the call says otherwise.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    a_rotated_key_in_its_grace_period_cannot_be_edited_and_nothing_is_recorded,
    an_expired_key_cannot_be_edited_back_to_life,
    a_rotation_that_cannot_happen_is_refused_before_any_hash_is_computed,
    a_successor_lives_as_long_as_its_predecessor_did_unless_told_otherwise,
);

/// What a refused call must leave untouched: the audit log and the replication change log.
async fn trail(app: &TestApp) -> (Vec<Value>, i64) {
    let changes = sqlx::query("SELECT COUNT(*) FROM changes")
        .fetch_one(app.pool())
        .await
        .expect("changes")
        .get::<i64, _>(0);
    (app.audit().await, changes)
}

async fn a_rotated_key_in_its_grace_period_cannot_be_edited_and_nothing_is_recorded(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "old", "environment": "live", "expires": "30d"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let rotated = app
        .post(
            &format!("/v1/keys/{id}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let successor = rotated.body["record"]["id"].as_str().expect("successor");
    let before = app.get(&format!("/v1/keys/{id}")).await.body;
    assert_eq!(before["status"], "active", "still in its grace period");
    assert_eq!(before["rotated_to"], successor);
    let trail_before = trail(&app).await;

    for change in [
        json!({"expires": "never"}),
        json!({"expires": "1y"}),
        json!({"name": "renamed"}),
        json!({"scopes": ["contacts:read"]}),
        json!({"rate_limit": {"requests_per_minute": 10, "burst": 2}}),
    ] {
        let reply = app.patch(&format!("/v1/keys/{id}"), change.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::CONFLICT, "key_rotated"),
            "{change}: {:?}",
            reply.body
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("successor")),
            "{:?}",
            reply.body
        );
    }
    assert_eq!(app.get(&format!("/v1/keys/{id}")).await.body, before);
    assert_eq!(
        trail(&app).await,
        trail_before,
        "no audit record, no change"
    );

    // The successor is the key to change.
    let reply = app
        .patch(&format!("/v1/keys/{successor}"), json!({"name": "new"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn an_expired_key_cannot_be_edited_back_to_life(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "short-lived", "environment": "live", "expires": "1h"}))
        .await;
    let id = record["id"].as_str().expect("id");
    app.clock.advance_secs(3600);
    let before = app.get(&format!("/v1/keys/{id}")).await.body;
    assert_eq!(before["status"], "expired", "expiry is inclusive");
    let trail_before = trail(&app).await;
    for change in [
        json!({"expires": "never"}),
        json!({"expires": "7d"}),
        json!({"name": "revived"}),
        json!({"metadata": {"team": "x"}}),
    ] {
        let reply = app.patch(&format!("/v1/keys/{id}"), change.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::CONFLICT, "key_expired"),
            "{change}: {:?}",
            reply.body
        );
    }
    assert_eq!(app.get(&format!("/v1/keys/{id}")).await.body, before);
    assert_eq!(
        trail(&app).await,
        trail_before,
        "no audit record, no change"
    );
    // A revoked key answers its own code.
    let (_, revoked) = app
        .create_key(json!({"name": "gone", "environment": "live"}))
        .await;
    let revoked = revoked["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{revoked}/revoke"),
        json!({"reason": "unused"}),
    )
    .await;
    let reply = app
        .patch(&format!("/v1/keys/{revoked}"), json!({"name": "back"}))
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "key_revoked")
    );
}

async fn a_rotation_that_cannot_happen_is_refused_before_any_hash_is_computed(app: TestApp) {
    let hashes = || app.state.metrics.key_hashes.get();
    let key = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "environment": "live"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let (_, rotated) = app.create_key(key("rotated", json!({}))).await;
    let rotated = rotated["id"].as_str().expect("id").to_owned();
    let first = app
        .post(
            &format!("/v1/keys/{rotated}/rotate"),
            json!({"grace_seconds": 86_400}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let (_, revoked) = app.create_key(key("revoked", json!({}))).await;
    let revoked = revoked["id"].as_str().expect("id").to_owned();
    app.post(
        &format!("/v1/keys/{revoked}/revoke"),
        json!({"reason": "compromised"}),
    )
    .await;
    let (_, expired) = app
        .create_key(key("expired", json!({"expires": "1h"})))
        .await;
    let expired = expired["id"].as_str().expect("id").to_owned();
    let (manager, _) = app
        .create_key(key("ops", json!({"scopes": ["api-keys:manage"]})))
        .await;
    let admin_id = app.audit().await[0]["target_key_id"]
        .as_str()
        .expect("admin key id")
        .to_owned();
    app.clock.advance_secs(2 * 3600);

    let computed = hashes();
    let refused = [
        (
            &app.admin_key,
            &rotated,
            StatusCode::CONFLICT,
            "key_rotated",
        ),
        (
            &app.admin_key,
            &revoked,
            StatusCode::CONFLICT,
            "key_revoked",
        ),
        (
            &app.admin_key,
            &expired,
            StatusCode::CONFLICT,
            "key_expired",
        ),
        (
            &manager,
            &admin_id,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        (
            &app.admin_key,
            &"key_0000000000000000000000".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    let trail_before = trail(&app).await;
    for (caller, id, status, code) in refused {
        let reply = app
            .call(
                Method::POST,
                &format!("/v1/keys/{id}/rotate"),
                Some(caller),
                Some(json!({})),
            )
            .await;
        assert_eq!((reply.status, reply.code()), (status, code), "{id}");
        assert_eq!(hashes(), computed, "rotating {id} computed no hash");
    }
    assert_eq!(trail(&app).await, trail_before, "nothing recorded");

    // The counter does count: a rotation that happens computes exactly one hash.
    let successor = first.body["record"]["id"].as_str().expect("successor");
    let reply = app
        .post(&format!("/v1/keys/{successor}/rotate"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(hashes(), computed + 1);
}

async fn a_successor_lives_as_long_as_its_predecessor_did_unless_told_otherwise(app: TestApp) {
    const DAY_MS: i64 = 86_400_000;
    let time = |value: &Value| {
        keyplane_control_plane::input::time::timestamp(value.as_str().expect("a time"))
            .expect("RFC 3339")
            .as_millis()
    };
    let rotate = |id: String, body: Value| {
        let app = &app;
        async move { app.post(&format!("/v1/keys/{id}/rotate"), body).await }
    };
    let (_, monthly) = app
        .create_key(json!({"name": "monthly", "environment": "live", "expires": "30d"}))
        .await;
    let (_, forever) = app
        .create_key(json!({"name": "forever", "environment": "live"}))
        .await;
    let (_, chosen) = app
        .create_key(json!({"name": "chosen", "environment": "live", "expires": "30d"}))
        .await;
    let id = |record: &Value| record["id"].as_str().expect("id").to_owned();
    // Three weeks on, the monthly key has nine days left; its successor gets thirty again.
    app.clock.advance_secs(21 * 86_400);
    let now = app.state.now().as_millis();
    let renewed = rotate(id(&monthly), json!({})).await;
    assert_eq!(renewed.status, StatusCode::CREATED, "{:?}", renewed.body);
    assert_eq!(
        time(&renewed.body["record"]["expires_at"]) - now,
        30 * DAY_MS
    );
    assert_eq!(
        time(&renewed.body["previous"]["expires_at"]) - now,
        9 * DAY_MS
    );
    // A key that never expires has a successor that never does.
    let still = rotate(id(&forever), json!({})).await;
    assert_eq!(still.body["record"]["expires_at"], Value::Null);
    // Or as asked: a preset, never, a time; a time past is refused and nothing happens.
    let refused = rotate(id(&chosen), json!({"expires": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    assert_eq!(
        app.get(&format!("/v1/keys/{}", id(&chosen))).await.body["rotated_to"],
        Value::Null
    );
    let weekly = rotate(id(&chosen), json!({"expires": "7d"})).await;
    assert_eq!(weekly.status, StatusCode::CREATED, "{:?}", weekly.body);
    assert_eq!(time(&weekly.body["record"]["expires_at"]) - now, 7 * DAY_MS);
    let unbounded = rotate(id(&weekly.body["record"]), json!({"expires": "never"})).await;
    assert_eq!(unbounded.body["record"]["expires_at"], Value::Null);
    // A key made to expire at the last second RFC 3339 can write: its successor, living as
    // long from later, is held to that time (and written as one).
    let (_, last) = app
        .create_key(json!({"name": "last", "environment": "live",
            "expires": "9999-12-31T23:59:59Z"}))
        .await;
    app.clock.advance_secs(10);
    let held = rotate(id(&last), json!({})).await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    assert_eq!(
        held.body["record"]["expires_at"],
        "9999-12-31T23:59:59.999Z"
    );
}
