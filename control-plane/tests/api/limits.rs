//! The operator's ceiling on per-key rate limits, at its default (ten times the default limit:
//! 1,000 requests a minute, bursts of 100).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;

backends!(
    rate_limits_above_the_default_ceiling_are_refused_on_create_and_update,
    a_rotation_lowers_a_kept_limit_above_the_ceiling_to_it,
);

fn limit(requests_per_minute: u64, burst: u64) -> Value {
    json!({"requests_per_minute": requests_per_minute, "burst": burst})
}

async fn rate_limits_above_the_default_ceiling_are_refused_on_create_and_update(app: TestApp) {
    let create =
        |rate_limit: Value| json!({"name": "k", "environment": "live", "rate_limit": rate_limit});
    let (_, at_ceiling) = app.create_key(create(limit(1000, 100))).await;
    assert_eq!(at_ceiling["rate_limit"], limit(1000, 100));
    let id = at_ceiling["id"].as_str().expect("id");
    let audit_before = app.audit().await;
    for over in [limit(1001, 100), limit(1000, 101), limit(6_000_000, 1)] {
        let reply = app.post("/v1/keys", create(over.clone())).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "create {over}: {:?}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("ceiling of 1000 requests per minute with bursts of 100"),
            "{message}"
        );
        let reply = app
            .patch(&format!("/v1/keys/{id}"), json!({"rate_limit": over}))
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "update: {:?}",
            reply.body
        );
    }
    assert_eq!(app.audit().await, audit_before, "nothing was recorded");
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.body["rate_limit"],
        limit(1000, 100),
        "unchanged"
    );
    // Within the ceiling, and back to the default, updates go through.
    for within in [limit(10, 2), limit(1000, 100), Value::Null] {
        let reply = app
            .patch(&format!("/v1/keys/{id}"), json!({"rate_limit": within}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["rate_limit"], within);
    }
}

async fn a_rotation_lowers_a_kept_limit_above_the_ceiling_to_it(app: TestApp) {
    let (_, within) = app
        .create_key(json!({"name": "within", "environment": "live", "rate_limit": limit(500, 50)}))
        .await;
    let (_, above) = app
        .create_key(json!({"name": "above", "environment": "live", "rate_limit": limit(500, 50)}))
        .await;
    let above = above["id"].as_str().expect("id");
    // Set before the operator lowered the ceiling (or written by an older version).
    let id = above
        .parse::<keyplane_shared::ids::KeyId>()
        .expect("key id");
    sqlx::query("UPDATE api_keys SET rate_limit_rpm = 5000, rate_limit_burst = 20 WHERE id = $1")
        .bind(id.to_bytes().to_vec())
        .execute(app.pool())
        .await
        .expect("raise");
    let rotated = app
        .post(&format!("/v1/keys/{above}/rotate"), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    assert_eq!(rotated.body["record"]["rate_limit"], limit(1000, 20));
    let within = within["id"].as_str().expect("id");
    let rotated = app
        .post(&format!("/v1/keys/{within}/rotate"), json!({}))
        .await;
    assert_eq!(rotated.body["record"]["rate_limit"], limit(500, 50), "kept");
}
