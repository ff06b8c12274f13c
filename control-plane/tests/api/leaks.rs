//! `POST /v1/leaks/report` as an attacker and as a finder would use it: a live key reported is
//! revoked (reason `compromised`, the note naming where it was found), audited, replicated and
//! announced as `key.leaked`; the answer is the same for unknown, revoked and just-revoked keys;
//! a replay changes nothing; a deleted key is left alone; reports are limited per address.

use axum::http::{Method, StatusCode};
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::{TestApp, until};

backends!(
    a_reported_live_key_is_revoked_audited_and_announced,
    the_answer_never_says_whether_the_key_existed,
    a_deleted_key_reported_is_left_as_it_is,
    a_report_the_database_could_not_take_at_first_is_revoked_when_it_can,
);

async fn report(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let reply = app
        .call(Method::POST, "/v1/leaks/report", None, Some(body))
        .await;
    (reply.status, reply.body)
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/keys/{id}")).await.body
}

async fn a_reported_live_key_is_revoked_audited_and_announced(app: TestApp) {
    let hook = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/unreachable", "events": ["key.leaked", "key.revoked"]}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED);
    let (key, record) = app
        .create_key(json!({"name": "pasted", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let head_before = app.store.feed_head().await.expect("head");
    let (status, body) = report(
        &app,
        json!({"key": format!("  {key}\n"), "url": "https://gist.example.com/abc"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"received": true}));
    until("the reported key is revoked", || async {
        status_of(&app, &id).await["status"] == "revoked"
    })
    .await;
    let shown = status_of(&app, &id).await;
    assert_eq!(shown["revocation_reason"], "compromised");
    assert_eq!(
        shown["revocation_note"],
        "reported as leaked by report at https://gist.example.com/abc"
    );
    // Replicated like any revoke: the feed moved on.
    assert!(app.store.feed_head().await.expect("head") > head_before);
    let audit = app.audit().await;
    let revoked: Vec<&Value> = audit
        .iter()
        .filter(|record| record["action"] == "key_revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["details"]["leak"]["source"], "report");
    assert!(revoked[0]["actor_key_id"].is_null(), "{}", revoked[0]);
    // key.revoked and key.leaked wait in the outbox for the endpoint.
    let events = app.take_due_events().await;
    let mut types: Vec<&str> = events
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    types.sort();
    assert_eq!(types, ["key.leaked", "key.revoked"]);
    let leaked = events
        .iter()
        .find(|event| event["type"] == "key.leaked")
        .expect("key.leaked");
    assert_eq!(leaked["data"]["key_id"], id.as_str());
    assert_eq!(leaked["data"]["url"], "https://gist.example.com/abc");

    // A replay is harmless: same answer, nothing more revoked or audited.
    let (status, body) = report(&app, json!({"key": key})).await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"received": true}))
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = app.audit().await;
    assert_eq!(
        again
            .iter()
            .filter(|record| record["action"] == "key_revoked")
            .count(),
        1
    );
}

async fn the_answer_never_says_whether_the_key_existed(app: TestApp) {
    let (live, record) = app
        .create_key(json!({"name": "live one", "environment": "live"}))
        .await;
    let (revoked, revoked_record) = app
        .create_key(json!({"name": "revoked one", "environment": "live"}))
        .await;
    let revoked_id = revoked_record["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{revoked_id}/revoke"),
        json!({"reason": "unused"}),
    )
    .await;
    let unknown = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    let mut answers = Vec::new();
    for key in [live.as_str(), revoked.as_str(), unknown.expose_secret()] {
        let reply = app
            .call(
                Method::POST,
                "/v1/leaks/report",
                None,
                Some(json!({ "key": key })),
            )
            .await;
        answers.push((reply.status, reply.body.to_string()));
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    let live_id = record["id"].as_str().expect("id");
    until("the live key is revoked", || async {
        status_of(&app, live_id).await["status"] == "revoked"
    })
    .await;
    // The revoked key keeps its own reason.
    assert_eq!(
        status_of(&app, revoked_id).await["revocation_reason"],
        "unused"
    );

    // Not a key at all, or a bad url: a clear 400 that says nothing about any key.
    for body in [
        json!({"key": "hello"}),
        json!({"key": format!("{}x", unknown.expose_secret())}),
        json!({"key": unknown.expose_secret(), "url": "a\u{7}b"}),
        json!({"key": unknown.expose_secret(), "url": "x".repeat(501)}),
        json!({"token": unknown.expose_secret()}),
    ] {
        let (status, answer) = report(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    // At most 10 at once from one address; the 10 above and below share the allowance.
    let mut limited = None;
    for n in 0..20 {
        let (status, answer) = report(&app, json!({"key": unknown.expose_secret()})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, answer));
            break;
        }
    }
    let (n, answer) = limited.expect("reports are limited per address");
    assert!(n < 10, "{n} reports passed");
    assert_eq!(answer["error"]["code"], "too_many_attempts");
}

async fn a_deleted_key_reported_is_left_as_it_is(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "old and gone", "environment": "live", "expires": "1h"}))
        .await;
    let id: keyplane_shared::ids::KeyId = record["id"].as_str().expect("id").parse().expect("id");
    app.clock.advance_secs(7200);
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let org: keyplane_shared::ids::OrgId = app.get("/v1/users/me").await.body["organization_id"]
        .as_str()
        .expect("org")
        .parse()
        .expect("org id");
    let audit_before = app.audit().await.len();
    // What a report (or GitHub's) of it leads to: nothing revoked, audited or announced.
    let leak = keyplane_control_plane::store::LeakedKey {
        id,
        source: "report".into(),
        url: None,
    };
    let revoked = app
        .store
        .revoke_leaked(org, vec![leak], &Default::default(), app.state.now())
        .await
        .expect("looked at");
    assert_eq!(revoked, [false]);
    assert_eq!(app.audit().await.len(), audit_before);
    assert!(app.take_due_events().await.is_empty());
}

/// The reporter is answered before the revocation runs, so a store failing at that moment
/// (here the database refuses the revocation's audit record) must not lose the report: the
/// revocation is tried again until the database takes it.
async fn a_report_the_database_could_not_take_at_first_is_revoked_when_it_can(app: TestApp) {
    let (key, record) = app
        .create_key(json!({"name": "pasted", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    crate::refusals::audit_log_refusing(&app, true).await;
    let (status, _) = report(&app, json!({"key": key})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The first try runs at once and fails; so do the retries while the database refuses.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(status_of(&app, &id).await["status"], "active");
    crate::refusals::audit_log_refusing(&app, false).await;
    until(
        "the reported key is revoked once the database takes it",
        || async { status_of(&app, &id).await["status"] == "revoked" },
    )
    .await;
    assert_eq!(
        status_of(&app, &id).await["revocation_reason"],
        "compromised"
    );
}
