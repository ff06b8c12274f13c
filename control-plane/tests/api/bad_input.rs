//! Bad input gets a clear 4xx and changes nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    malformed_bodies_are_refused_and_change_nothing,
    sql_metacharacters_are_stored_as_plain_text,
    bad_paths_and_queries_are_clear_errors,
);

async fn malformed_bodies_are_refused_and_change_nothing(app: TestApp) {
    let audit_before = app.audit().await;
    let keys_before = app.get("/v1/keys").await.body;
    let raw = |body: &str, content_type: &str| {
        Request::post("/v1/keys")
            .header("x-api-key", &app.admin_key)
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .expect("request")
    };
    let cases = [
        (
            raw("{\"name\": ", "application/json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw("[]", "application/json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw("name=x", "application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(
                &json!({"name": "x", "environment": "live", "admin": true}).to_string(),
                "application/json",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw(
                &json!({"name": "x", "environment": "staging"}).to_string(),
                "application/json",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            raw(
                &json!({"name": "x".repeat(70_000), "environment": "live"}).to_string(),
                "application/json",
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let reply = app.send(request).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{:?}",
            reply.body
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let invalid = [
        json!({"name": "", "environment": "live"}),
        json!({"name": "a\u{0007}b", "environment": "live"}),
        json!({"name": "x".repeat(101), "environment": "live"}),
        json!({"name": "x", "environment": "live", "scopes": ["contacts"]}),
        json!({"name": "x", "environment": "live", "scopes": ["Contacts:Read"]}),
        json!({"name": "x", "environment": "live", "expires": "soon"}),
        json!({"name": "x", "environment": "live", "rate_limit": {"requests_per_minute": 0, "burst": 1}}),
    ];
    for body in invalid {
        let reply = app.post("/v1/keys", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply.body
        );
        assert_eq!(reply.code(), "invalid_request");
    }
    let revoke = app
        .post(
            &format!("/v1/keys/{}/revoke", "key_0000000000000000000000"),
            json!({"reason": "bored"}),
        )
        .await;
    assert_eq!(
        revoke.status,
        StatusCode::BAD_REQUEST,
        "unknown revocation reason"
    );
    assert_eq!(app.audit().await, audit_before, "nothing was recorded");
    assert_eq!(
        app.get("/v1/keys").await.body,
        keys_before,
        "nothing was created"
    );
}

async fn sql_metacharacters_are_stored_as_plain_text(app: TestApp) {
    let name = "x'); DROP TABLE api_keys; -- \" ` \\ %";
    let (_, record) = app
        .create_key(json!({"name": name, "environment": "live", "metadata": {"q": "' OR 1=1 --"}}))
        .await;
    assert_eq!(record["name"], name);
    let found = app.get("/v1/keys?name=DROP%20TABLE").await;
    assert_eq!(found.body["data"][0]["name"], name);
    assert_eq!(found.body["data"][0]["metadata"]["q"], "' OR 1=1 --");
    assert_eq!(
        app.get("/v1/keys").await.body["data"]
            .as_array()
            .expect("data")
            .len(),
        2
    );
}

async fn bad_paths_and_queries_are_clear_errors(app: TestApp) {
    for (path, status, code) in [
        ("/v1/keys/not-an-id", StatusCode::NOT_FOUND, "not_found"),
        (
            "/v1/keys?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/keys?limit=abc",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/keys?status=sleeping",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/keys?cursor=bm9wZQ",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/keys?colour=blue",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/audit?since=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("/v1/nothing-here", StatusCode::NOT_FOUND, "not_found"),
        // A path parameter that is not UTF-8 once decoded names nothing (before: axum's own
        // plain-text 400).
        ("/v1/keys/%FF", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/keys/%FF/usage", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/webhooks/%C3%28", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let reply = app.get(path).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{path}: {:?}",
            reply.body
        );
    }
    // A name filter longer than any name is refused. SQLite would fail on its pattern (past
    // the 50,000 bytes `LIKE` takes) with a 500; `_` is escaped to two bytes.
    for filter in ["a".repeat(50_000), "_".repeat(25_001), "a".repeat(101)] {
        let reply = app.get(&format!("/v1/keys?name={filter}")).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "a {}-character filter: {:?}",
            filter.len(),
            reply.body
        );
    }
    let longest = app.get(&format!("/v1/keys?name={}", "a".repeat(100))).await;
    assert_eq!(longest.status, StatusCode::OK, "{:?}", longest.body);
    let wrong_method = app
        .call(Method::PUT, "/v1/keys", Some(&app.admin_key), None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
}
