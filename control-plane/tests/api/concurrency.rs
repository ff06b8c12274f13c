//! Concurrent rotate + revoke + update of one key: one consistent outcome, a complete trail;
//! and a management key revoked while its own calls are on their way makes nothing after.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use keyplane_control_plane::store::{
    AuditContext, CallerEnded, KeyChanges, Reconciliation, StoreError,
};
use keyplane_shared::ids::{EventId, KeyId, WebhookId};
use serde_json::json;
use sqlx::Row as _;

use crate::backends;
use crate::helpers::{TestApp, creates_under_way};

backends!(
    concurrent_rotate_revoke_and_update_of_one_key_leave_one_history,
    a_management_key_revoked_while_its_creates_wait_makes_no_key_after,
    a_caller_key_revoked_before_its_change_reaches_the_store_changes_nothing,
);

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

/// A leaked management key floods `POST /v1/keys`; the owner revokes it as soon as the first
/// create answers. The creates still waiting (for their hashing) must make nothing after the
/// revocation: they commit before it or are refused with 401 `revoked_api_key`.
async fn a_management_key_revoked_while_its_creates_wait_makes_no_key_after(app: TestApp) {
    let (leaked, record) = app
        .create_key(json!({"name": "leaked", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    let leaked_id = record["id"].as_str().expect("id").to_owned();
    let app = Arc::new(app);
    let creates = creates_under_way(24, |n| {
        let (app, leaked) = (app.clone(), leaked.clone());
        async move {
            let body = json!({"name": format!("made {n}"), "environment": "live"});
            app.call(Method::POST, "/v1/keys", Some(&leaked), Some(body))
                .await
        }
    })
    .await;
    let revoked = app
        .post(
            &format!("/v1/keys/{leaked_id}/revoke"),
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    let (mut made, mut refused) = (0, 0);
    for create in creates {
        let reply = create.await.expect("task");
        match reply.status {
            StatusCode::CREATED => made += 1,
            StatusCode::UNAUTHORIZED => {
                assert_eq!(reply.code(), "revoked_api_key", "{:?}", reply.body);
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(made + refused, 24);
    assert!(made >= 1);
    // The audit chain is the order of commits: every key the leaked key made comes before
    // its revocation, and every 201 is one of them.
    let trail = app.audit().await;
    let revocation = trail
        .iter()
        .position(|r| r["action"] == "key_revoked" && r["target_key_id"] == leaked_id.as_str())
        .expect("the revocation");
    let made_by_leaked = |r: &&serde_json::Value| {
        r["action"] == "key_created" && r["actor_key_id"] == leaked_id.as_str()
    };
    assert_eq!(trail.iter().filter(made_by_leaked).count(), made);
    assert!(
        trail[revocation..].iter().all(|r| !made_by_leaked(&r)),
        "a key was made by the leaked key after its revocation"
    );
}

/// The same, made certain: a change whose caller's key was revoked after it was let in (its
/// authentication read the key as active) reaches the store and is refused there, under the
/// organization's lock, and nothing changes.
async fn a_caller_key_revoked_before_its_change_reaches_the_store_changes_nothing(app: TestApp) {
    let endpoint = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/none", "events": ["key.created"]}),
        )
        .await;
    let endpoint = WebhookId::parse(endpoint.body["webhook"]["id"].as_str().expect("id"))
        .expect("a webhook id");
    let (_, caller) = app
        .create_key(json!({"name": "caller", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    let (_, target) = app
        .create_key(json!({"name": "target", "environment": "live"}))
        .await;
    let id = |record: &serde_json::Value| {
        KeyId::parse(record["id"].as_str().expect("id")).expect("a key id")
    };
    let org = app.only_org_id().await;
    let context = AuditContext {
        actor: Some(id(&caller)),
        request_id: "req_in_flight".into(),
        ..AuditContext::default()
    };
    let changes = KeyChanges {
        name: Some("renamed".into()),
        ..KeyChanges::default()
    };
    let update = |context: AuditContext, changes: KeyChanges| {
        let store = app.store.clone();
        let target = id(&target);
        let now = app.state.now();
        async move { store.update_key(org, target, changes, &context, now).await }
    };
    let reply = app
        .post(
            &format!("/v1/keys/{}/revoke", caller["id"].as_str().expect("id")),
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let refused = update(context.clone(), changes.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::CallerEnded(CallerEnded::Revoked))),
        "{refused:?}"
    );
    let unchanged = app
        .get(&format!("/v1/keys/{}", target["id"].as_str().expect("id")))
        .await;
    assert_eq!(unchanged.body["name"], "target");
    // The same for the organization's other changes a management key makes.
    let reconciled = app
        .store
        .reconcile_keys(org, None, Reconciliation::Revoke, &context, app.state.now())
        .await;
    assert!(
        matches!(
            reconciled,
            Err(StoreError::CallerEnded(CallerEnded::Revoked))
        ),
        "{reconciled:?}"
    );
    let event: Vec<u8> = sqlx::query_scalar("SELECT id FROM webhook_events LIMIT 1")
        .fetch_one(app.pool())
        .await
        .expect("a key.created event");
    let event = EventId::from_bytes(event.try_into().expect("16 bytes"));
    let redelivered = app
        .store
        .redeliver(org, endpoint, event, &context, app.state.now())
        .await;
    assert!(
        matches!(
            redelivered,
            Err(StoreError::CallerEnded(CallerEnded::Revoked))
        ),
        "{redelivered:?}"
    );
    // An expired caller is refused the same way; a caller without a key (a signed-in person)
    // is not checked here.
    let (_, expiring) = app
        .create_key(json!({"name": "expiring", "environment": "live",
            "scopes": ["api-keys:manage"], "expires": "2099-01-01T00:00:00Z"}))
        .await;
    app.clock.advance_secs(100 * 365 * 86_400);
    let expired = AuditContext {
        actor: Some(id(&expiring)),
        ..context.clone()
    };
    let refused = update(expired, changes.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::CallerEnded(CallerEnded::Expired))),
        "{refused:?}"
    );
    let no_key = AuditContext {
        actor: None,
        ..context
    };
    update(no_key, changes).await.expect("a change by no key");
}
