//! Concurrent rotate + revoke + update of one key: one consistent outcome, a complete trail.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::Row as _;

use crate::backends;
use crate::helpers::TestApp;

backends!(concurrent_rotate_revoke_and_update_of_one_key_leave_one_history);

async fn concurrent_rotate_revoke_and_update_of_one_key_leave_one_history(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "contested", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let app = app.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let reply = match i % 3 {
                0 => app.post(&format!("/v1/keys/{id}/rotate"), json!({})).await,
                1 => {
                    app.post(
                        &format!("/v1/keys/{id}/revoke"),
                        json!({"reason": "compromised"}),
                    )
                    .await
                }
                _ => {
                    app.patch(
                        &format!("/v1/keys/{id}"),
                        json!({"name": format!("name {i}")}),
                    )
                    .await
                }
            };
            (i % 3, reply)
        }));
    }
    let (mut rotated, mut revoked, mut already, mut updated, mut conflicts) = (0, 0, 0, 0, 0);
    for task in tasks {
        let (kind, reply) = task.await.expect("task");
        match (kind, reply.status) {
            (0, StatusCode::CREATED) => rotated += 1,
            (1, StatusCode::OK) if reply.body["already_revoked"] == true => already += 1,
            (1, StatusCode::OK) => revoked += 1,
            (2, StatusCode::OK) => updated += 1,
            (0 | 2, StatusCode::CONFLICT) => conflicts += 1,
            other => panic!("unexpected outcome {other:?}: {:?}", reply.body),
        }
    }
    assert_eq!(rotated + revoked, 1, "exactly one operation ended the key");
    assert_eq!(revoked + already, 10, "every revoke call answered 200");
    assert_eq!(rotated + updated + conflicts, 20);

    let key = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(key.body["status"], "revoked");

    // The trail holds exactly the calls that succeeded, the ending one after every update.
    let trail: Vec<serde_json::Value> = app
        .audit()
        .await
        .into_iter()
        .filter(|r| r["target_key_id"] == id.as_str())
        .collect();
    let count = |action: &str| trail.iter().filter(|r| r["action"] == action).count();
    assert_eq!(count("key_updated"), updated);
    assert_eq!(count("key_rotated"), rotated);
    assert_eq!(count("key_revoked"), revoked + already);
    let ending = trail
        .iter()
        .position(|r| {
            r["action"] == "key_rotated"
                || r["details"]["already_revoked"] == false && r["action"] == "key_revoked"
        })
        .expect("the ending record");
    assert!(
        trail[ending..].iter().all(|r| r["action"] != "key_updated"),
        "no update after the end"
    );
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);

    // The replication log has one change per mutation, numbered without gaps.
    let seqs: Vec<i64> = sqlx::query("SELECT seq FROM changes ORDER BY seq")
        .fetch_all(app.pool())
        .await
        .expect("changes")
        .iter()
        .map(|row| row.get::<i64, _>(0))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    // admin + contested, each update, and a rotation writes two (successor, old) or a revoke one.
    assert_eq!(seqs.len(), 2 + updated + 2 * rotated + revoked);
}
