//! Management authentication and organization confinement.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keyplane_control_plane::bootstrap::create_organization;
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;

backends!(
    missing_and_bad_keys_get_401s_that_reveal_nothing,
    bearer_tokens_are_accepted_like_x_api_key,
    keys_without_the_manage_scope_get_403_and_are_audited,
    revoked_management_keys_stop_at_once,
    another_organizations_keys_answer_404_and_never_change,
    a_caller_cannot_grant_or_touch_scopes_it_does_not_hold,
);

/// The error body without its request id.
fn without_request_id(mut body: Value) -> Value {
    body["error"]["request_id"] = Value::Null;
    body
}

async fn missing_and_bad_keys_get_401s_that_reveal_nothing(app: TestApp) {
    let missing = app.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.code(), "missing_api_key");
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"keyplane\""
    );
    assert!(
        missing.body["error"]["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_"))
    );
    assert_eq!(
        missing.headers["x-request-id"],
        missing.body["error"]["request_id"].as_str().expect("id")
    );

    let unknown = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    // A real key with one character changed fails its checksum; an unknown well-formed key is
    // simply not found; both must look the same to the caller.
    let mut typo = app.admin_key.clone();
    let last = typo.pop().expect("non-empty");
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let replies = [
        app.call(Method::GET, "/v1/keys", Some(unknown.expose_secret()), None)
            .await,
        app.call(Method::GET, "/v1/keys", Some(&typo), None).await,
        app.call(Method::GET, "/v1/keys", Some("garbage"), None)
            .await,
    ];
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.code(), "invalid_api_key");
        assert_eq!(
            reply.headers["www-authenticate"],
            "Bearer realm=\"keyplane\", error=\"invalid_token\", \
             error_description=\"The API key is not valid\""
        );
        assert_eq!(
            without_request_id(reply.body.clone()),
            without_request_id(replies[0].body.clone())
        );
        assert!(!reply.body.to_string().contains(unknown.expose_secret()));
    }
    assert!(
        app.audit()
            .await
            .iter()
            .all(|r| r["action"] != "auth_failed"),
        "unattributable failures are not in any org's log"
    );
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().expect("text");
    assert!(
        text.contains("keyplane_management_auth_failures_total{outcome=\"invalid_api_key\"} 3"),
        "{text}"
    );
}

async fn bearer_tokens_are_accepted_like_x_api_key(app: TestApp) {
    let request = Request::get("/v1/keys")
        .header("authorization", format!("Bearer {}", app.admin_key))
        .body(Body::empty())
        .expect("request");
    assert_eq!(app.send(request).await.status, StatusCode::OK);
}

async fn keys_without_the_manage_scope_get_403_and_are_audited(app: TestApp) {
    let (reader, record) = app
        .create_key(json!({"name": "reader", "environment": "live", "scopes": ["contacts:read"]}))
        .await;
    let reply = app.call(Method::GET, "/v1/keys", Some(&reader), None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "insufficient_scope");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("api-keys:manage")
    );
    let last = app.audit().await.pop().expect("a record");
    assert_eq!(last["action"], "auth_failed");
    assert_eq!(last["actor_key_id"], record["id"]);
    assert_eq!(last["details"]["reason"], "insufficient_scope");
}

async fn revoked_management_keys_stop_at_once(app: TestApp) {
    let (manager, record) = app
        .create_key(json!({"name": "ops", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    assert_eq!(
        app.call(Method::GET, "/v1/keys", Some(&manager), None)
            .await
            .status,
        StatusCode::OK
    );
    let id = record["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{id}/revoke"),
        json!({"reason": "employee_departure"}),
    )
    .await;
    let reply = app
        .call(Method::GET, "/v1/keys", Some(&manager), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "revoked_api_key");
}

async fn another_organizations_keys_answer_404_and_never_change(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "acme's", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let (_, other_admin) = create_organization(&app.state, "Globex")
        .await
        .expect("second org");
    let other = other_admin.expose_secret();
    let audit_before = app.audit().await;
    let path = format!("/v1/keys/{id}");
    let attempts = [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "pwned"}))),
        (Method::POST, format!("{path}/rotate"), Some(json!({}))),
        (
            Method::POST,
            format!("{path}/revoke"),
            Some(json!({"reason": "other"})),
        ),
        (Method::DELETE, path.clone(), None),
    ];
    for (method, path, body) in attempts {
        let reply = app.call(method.clone(), &path, Some(other), body).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            reply.body
        );
        assert_eq!(reply.code(), "not_found");
    }
    // The same answer as for an id that exists nowhere.
    let nowhere = app
        .call(
            Method::GET,
            "/v1/keys/key_0000000000000000000000",
            Some(other),
            None,
        )
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&path).await.body, record, "unchanged");
    assert_eq!(
        app.audit().await,
        audit_before,
        "nothing recorded in the victim's log"
    );
    let listed = app.call(Method::GET, "/v1/keys", Some(other), None).await;
    assert_eq!(
        listed.body["data"].as_array().expect("data").len(),
        1,
        "only Globex's own key"
    );
}

async fn a_caller_cannot_grant_or_touch_scopes_it_does_not_hold(app: TestApp) {
    let (manager, _) = app
        .create_key(json!({"name": "ops", "environment": "live", "scopes": ["api-keys:manage", "contacts:*"]}))
        .await;
    let grant = |scopes: Value| json!({"name": "x", "environment": "live", "scopes": scopes});
    let ok = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&manager),
            Some(grant(json!(["contacts:read"]))),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    for scopes in [
        json!(["admin:full"]),
        json!(["billing:read"]),
        json!(["contacts:read", "billing:*"]),
    ] {
        let reply = app
            .call(
                Method::POST,
                "/v1/keys",
                Some(&manager),
                Some(grant(scopes.clone())),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{scopes}");
        assert_eq!(reply.code(), "insufficient_scope");
    }
    // The admin key is out of this manager's reach: rotating it would hand over an admin key.
    let admin_id = app.audit().await[0]["target_key_id"]
        .as_str()
        .expect("admin key id")
        .to_owned();
    let path = format!("/v1/keys/{admin_id}");
    for (method, path, body) in [
        (Method::POST, format!("{path}/rotate"), Some(json!({}))),
        (
            Method::POST,
            format!("{path}/revoke"),
            Some(json!({"reason": "other"})),
        ),
        (Method::PATCH, path.clone(), Some(json!({"name": "mine"}))),
    ] {
        let reply = app.call(method.clone(), &path, Some(&manager), body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(app.get(&path).await.body["status"], "active");
}
