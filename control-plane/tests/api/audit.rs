//! The audit log: what is recorded, filters and pages, and tamper detection.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::Executor as _;

use crate::backends;
use crate::helpers::TestApp;
use keyplane_control_plane::store::sql::Backend;

backends!(
    every_management_action_is_recorded_with_actor_and_target,
    audit_pages_and_filters,
    an_intact_chain_verifies_and_tampering_is_detected,
    the_database_refuses_to_rewrite_the_audit_log,
);

async fn every_management_action_is_recorded_with_actor_and_target(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    app.patch(&format!("/v1/keys/{id}"), json!({"name": "k2"}))
        .await;
    let rotated = app.post(&format!("/v1/keys/{id}/rotate"), json!({})).await;
    let successor = rotated.body["record"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        &format!("/v1/keys/{successor}/revoke"),
        json!({"reason": "unused"}),
    )
    .await;
    let deleted = app
        .call(
            axum::http::Method::DELETE,
            &format!("/v1/keys/{successor}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let records = app.audit().await;
    let actions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "org_created",
            "key_created",
            "key_updated",
            "key_rotated",
            "key_revoked",
            "key_deleted"
        ]
    );
    let admin_id = records[0]["target_key_id"].clone();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], i + 1);
        if i > 0 {
            assert_eq!(record["actor_key_id"], admin_id, "who");
            assert!(
                record["request_id"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("req_"))
            );
            assert_eq!(record["prev_hash"], records[i - 1]["hash"], "chained");
        }
    }
    assert_eq!(records[2]["details"]["before"]["name"], "k");
    assert_eq!(records[2]["details"]["after"]["name"], "k2");
    assert_eq!(records[3]["target_key_id"], id);
    assert_eq!(records[3]["details"]["successor"]["id"], successor);
    assert_eq!(records[4]["details"]["reason"], "unused");
    assert!(
        !records.iter().any(|r| r.to_string().contains("argon2")),
        "no hashes in details"
    );
}

async fn audit_pages_and_filters(app: TestApp) {
    for i in 0..5 {
        app.create_key(json!({"name": format!("k{i}"), "environment": "live"}))
            .await;
    }
    let first = app.get("/v1/audit?limit=4").await;
    assert_eq!(first.body["data"].as_array().expect("data").len(), 4);
    assert_eq!(first.body["data"][0]["seq"], 6, "newest first");
    let cursor = first.body["next_cursor"].as_str().expect("more");
    let second = app.get(&format!("/v1/audit?limit=4&cursor={cursor}")).await;
    let seqs: Vec<u64> = second.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [2, 1]);
    assert_eq!(second.body["next_cursor"], json!(null));
    let created = app.get("/v1/audit?action=key_created").await;
    assert_eq!(created.body["data"].as_array().expect("data").len(), 5);
    let none = app.get("/v1/audit?until=2020-01-01T00:00:00Z").await;
    assert_eq!(none.body["data"], json!([]));
}

async fn an_intact_chain_verifies_and_tampering_is_detected(app: TestApp) {
    for i in 0..3 {
        app.create_key(json!({"name": format!("k{i}"), "environment": "live"}))
            .await;
    }
    let report = app.get("/v1/audit/verify").await;
    assert_eq!(
        report.body,
        json!({"valid": true, "records": 4, "error": null})
    );

    // Someone with database access rewrites a record's details, bypassing the append-only
    // trigger; the chain exposes it.
    let pool = app.store.pool();
    let (disable, enable) = match app.backend {
        Backend::Sqlite => ("DROP TRIGGER audit_log_no_update", None),
        Backend::Postgres => (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
            Some("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update"),
        ),
    };
    pool.execute(disable).await.expect("disable trigger");
    pool.execute("UPDATE audit_log SET details = '{\"name\":\"innocent\"}' WHERE seq = 3")
        .await
        .expect("tamper");
    if let Some(enable) = enable {
        pool.execute(enable).await.expect("enable trigger");
    }
    let report = app.get("/v1/audit/verify").await;
    assert_eq!(report.body["valid"], false);
    assert!(
        report.body["error"]
            .as_str()
            .expect("error")
            .contains("record 3"),
        "{:?}",
        report.body
    );
}

async fn the_database_refuses_to_rewrite_the_audit_log(app: TestApp) {
    let pool = app.store.pool();
    assert!(
        pool.execute("UPDATE audit_log SET action = 'key_created'")
            .await
            .is_err()
    );
    assert!(pool.execute("DELETE FROM audit_log").await.is_err());
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);
}
