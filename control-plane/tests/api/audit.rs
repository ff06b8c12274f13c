//! The audit log: what is recorded, filters and pages, and tamper detection.

use axum::http::StatusCode;
use keyplane_control_plane::audit::api::{VERIFY_PAGE, verify_chain_in_pages};
use keyplane_control_plane::store::{AuditContext, FailedAuth};
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
    a_chain_longer_than_one_page_verifies_and_tampering_in_its_second_page_is_found,
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
            "member_invited",
            "key_created",
            "key_updated",
            "key_rotated",
            "key_revoked",
            "key_deleted"
        ]
    );
    let admin_id = records[0]["target_key_id"].clone();
    // The setup invitation (record 2) was made at first start, by no key.
    assert_eq!(records[1]["actor_key_id"], json!(null));
    assert_eq!(records[1]["details"]["role"], "owner");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], i + 1);
        assert_eq!(record["format"], 2);
        if i > 1 {
            assert_eq!(record["actor_key_id"], admin_id, "who");
            assert!(
                record["request_id"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("req_"))
            );
            assert_eq!(record["prev_hash"], records[i - 1]["hash"], "chained");
        }
    }
    assert_eq!(records[3]["details"]["before"]["name"], "k");
    assert_eq!(records[3]["details"]["after"]["name"], "k2");
    assert_eq!(records[4]["target_key_id"], id);
    assert_eq!(records[4]["details"]["successor"]["id"], successor);
    assert_eq!(records[5]["details"]["reason"], "unused");
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
    // Records 1 and 2 are the first start's: the organization and the first owner's setup
    // invitation.
    assert_eq!(first.body["data"][0]["seq"], 7, "newest first");
    let cursor = first.body["next_cursor"].as_str().expect("more");
    let second = app.get(&format!("/v1/audit?limit=4&cursor={cursor}")).await;
    let seqs: Vec<u64> = second.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
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
        json!({"valid": true, "records": 5, "error": null})
    );

    // Someone with database access rewrites a record's details, bypassing the append-only
    // trigger; the chain exposes it.
    let pool = app.pool();
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
    let pool = app.pool();
    assert!(
        pool.execute("UPDATE audit_log SET action = 'key_created'")
            .await
            .is_err()
    );
    assert!(pool.execute("DELETE FROM audit_log").await.is_err());
    if app.backend == Backend::Postgres {
        // TRUNCATE fires no row trigger: it has its own.
        assert!(pool.execute("TRUNCATE audit_log").await.is_err());
    }
    // Nor can the head the chain is held to be moved back (to hide records cut from the end).
    assert!(
        pool.execute("UPDATE orgs SET audit_seq = 0").await.is_err(),
        "the audit head moved back"
    );
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);
}

/// Runs `statement` on the audit log with its append-only trigger out of the way, as someone
/// with database access would: SQLite's `sqlite_trigger` (one per statement kind), PostgreSQL's
/// one trigger for UPDATE and DELETE.
async fn bypassing_trigger(app: &TestApp, sqlite_trigger: &str, statement: &str) {
    let pool = app.pool();
    match app.backend {
        Backend::Sqlite => {
            pool.execute(sqlx::AssertSqlSafe(format!(
                "DROP TRIGGER {sqlite_trigger}"
            )))
            .await
            .expect("drop trigger");
            pool.execute(sqlx::AssertSqlSafe(statement.to_owned()))
                .await
                .expect("tamper");
        }
        Backend::Postgres => {
            let toggle =
                |on: &str| format!("ALTER TABLE audit_log {on} TRIGGER audit_log_no_update");
            pool.execute(sqlx::AssertSqlSafe(toggle("DISABLE")))
                .await
                .expect("disable trigger");
            pool.execute(sqlx::AssertSqlSafe(statement.to_owned()))
                .await
                .expect("tamper");
            pool.execute(sqlx::AssertSqlSafe(toggle("ENABLE")))
                .await
                .expect("enable trigger");
        }
    }
}

async fn a_chain_longer_than_one_page_verifies_and_tampering_in_its_second_page_is_found(
    app: TestApp,
) {
    let org = app.only_org_id().await;
    // 1,500 records (the first start wrote two): one and a half pages, written in one transaction to keep the test quick.
    let filler: Vec<FailedAuth> = (0..1_498)
        .map(|n| FailedAuth {
            details: json!({"reason": "insufficient_scope", "count": 1, "n": n}),
            context: AuditContext {
                request_id: format!("req_filler_{n}"),
                ..AuditContext::default()
            },
        })
        .collect();
    app.store
        .record_failed_auths(org, &filler, app.state.now())
        .await
        .expect("filler");
    const { assert!(1_500 > VERIFY_PAGE, "longer than one page") };
    let intact = json!({"valid": true, "records": 1500, "error": null});
    assert_eq!(app.get("/v1/audit/verify").await.body, intact);
    let pages = [1, 999, 1000, 1500, 1501];
    let report = |page: u32| {
        let store = app.store.clone();
        let sealer = app.state.sealer.clone();
        async move {
            let report = verify_chain_in_pages(store.as_ref(), &sealer, org, page)
                .await
                .expect("read");
            serde_json::to_value(report).expect("JSON")
        }
    };
    for page in pages {
        assert_eq!(report(page).await, intact, "pages of {page}");
    }

    bypassing_trigger(
        &app,
        "audit_log_no_update",
        "UPDATE audit_log SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 1200",
    )
    .await;
    let broken = app.get("/v1/audit/verify").await.body;
    assert_eq!(broken["valid"], false);
    assert_eq!(broken["records"], 1500, "every record read, as before");
    assert_eq!(
        broken["error"], "record 1200 does not match its hash (it was altered)",
        "{broken}"
    );
    for page in pages {
        assert_eq!(report(page).await, broken, "pages of {page}");
    }

    // Records removed from the end: the head still says 1500.
    bypassing_trigger(
        &app,
        "audit_log_no_delete",
        "DELETE FROM audit_log WHERE seq > 1400",
    )
    .await;
    let truncated = app.get("/v1/audit/verify").await.body;
    assert_eq!(truncated["valid"], false);
    assert_eq!(truncated["records"], 1400);
    assert_eq!(
        truncated["error"], broken["error"],
        "the first break is reported"
    );
}
