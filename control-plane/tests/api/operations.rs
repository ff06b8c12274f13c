//! Health, readiness, metrics, the OpenAPI document, and a real listener.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    health_and_readiness_answer_and_readiness_follows_the_database,
    metrics_count_requests_by_route_and_status,
    every_documented_operation_is_routed_and_every_route_is_documented,
    a_real_listener_records_the_client_address_and_request_id,
    without_a_metrics_listener_metrics_are_served_on_the_main_listener,
);

async fn health_and_readiness_answer_and_readiness_follows_the_database(app: TestApp) {
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.body,
        json!({"status": "ok"})
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
    app.store.close().await;
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "unavailable");
    let call = app.get("/v1/keys").await;
    assert_eq!(
        call.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a clear 503, not a 500"
    );
    assert!(
        !call.body.to_string().to_lowercase().contains("pool"),
        "no internals in the body"
    );
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    assert!(app.store.ping().await.is_err());
}

async fn metrics_count_requests_by_route_and_status(app: TestApp) {
    app.get("/v1/keys").await;
    app.get("/v1/keys/key_0000000000000000000000").await;
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body.as_str().expect("text");
    assert!(
        text.contains(
            "keyplane_http_requests_total{method=\"GET\",route=\"/v1/keys\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "keyplane_http_requests_total{method=\"GET\",route=\"/v1/keys/{id}\",status=\"404\"} 1"
        ),
        "{text}"
    );
}

async fn every_documented_operation_is_routed_and_every_route_is_documented(app: TestApp) {
    let document = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let paths = document["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    // The API surface the issue asks for; a route added without documentation (or the reverse)
    // changes one side of this comparison.
    let expected = [
        "DELETE /v1/invitations/{id}",
        "DELETE /v1/keys/{id}",
        "DELETE /v1/roles/{name}",
        "DELETE /v1/sessions",
        "DELETE /v1/sessions/current",
        "DELETE /v1/sessions/{id}",
        "DELETE /v1/webhooks/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /readyz",
        "GET /v1/audit",
        "GET /v1/audit/verify",
        "GET /v1/auth/config",
        "GET /v1/edge/changes",
        "GET /v1/edge/snapshot",
        "GET /v1/invitations",
        "GET /v1/keys",
        "GET /v1/keys/{id}",
        "GET /v1/keys/{id}/usage",
        "GET /v1/keys/{id}/usage/daily",
        "GET /v1/members",
        "GET /v1/operator/edges",
        "GET /v1/operator/organizations",
        "GET /v1/organization/branding",
        "GET /v1/organization/expiry-notices",
        "GET /v1/roles",
        "GET /v1/sessions",
        "GET /v1/users/me",
        "GET /v1/webhooks",
        "GET /v1/webhooks/{id}",
        "GET /v1/webhooks/{id}/attempts",
        "PATCH /v1/keys/{id}",
        "PATCH /v1/members/{user_id}",
        "PATCH /v1/webhooks/{id}",
        "POST /v1/edge/usage",
        "POST /v1/invitations",
        "POST /v1/invitations/accept",
        "POST /v1/keys",
        "POST /v1/keys/reconcile",
        "POST /v1/keys/{id}/revoke",
        "POST /v1/keys/{id}/rotate",
        "POST /v1/keys/{id}/transfer",
        "POST /v1/leaks/github",
        "POST /v1/leaks/report",
        "POST /v1/members/{user_id}/remove",
        "POST /v1/portal/sessions",
        "POST /v1/roles",
        "POST /v1/sessions",
        "POST /v1/sessions/portal",
        "POST /v1/users/me/password",
        "POST /v1/webhooks",
        "POST /v1/webhooks/{id}/events/{event_id}/redeliver",
        "POST /v1/webhooks/{id}/rotate-secret",
        "PUT /v1/organization/branding",
        "PUT /v1/organization/expiry-notices",
        "PUT /v1/roles/{name}",
    ];
    assert_eq!(documented, expected);
    // The feed and usage reports are for edges: their own tag and the request signature, not a
    // management key.
    for (path, method) in [
        ("/v1/edge/changes", "get"),
        ("/v1/edge/snapshot", "get"),
        ("/v1/edge/usage", "post"),
    ] {
        let operation = &document["paths"][path][method];
        assert_eq!(operation["tags"], json!(["edge"]), "{path}");
        assert_eq!(
            operation["security"],
            json!([{"edge_signature": []}]),
            "{path}"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["edge_signature"]["name"],
        "x-keyplane-signature"
    );
    // Every documented operation reaches a handler: never the router's own 404 or 405.
    for operation in &documented {
        let (method, path) = operation.split_once(' ').expect("method and path");
        let path = path
            .replace("{user_id}", "usr_0000000000000000000000")
            .replace("{name}", "no-such-role")
            .replace(
                "/v1/sessions/{id}",
                "/v1/sessions/ses_0000000000000000000000",
            )
            .replace("{id}", "key_0000000000000000000000");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let reply = app
            .call(method, &path, Some(&app.admin_key), Some(json!({})))
            .await;
        assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{operation}");
        if reply.status == StatusCode::NOT_FOUND {
            assert_ne!(
                reply.body["error"]["message"], "route not found",
                "{operation} is routed"
            );
        }
    }
    // And undocumented paths are not served.
    for path in ["/v1/orgs", "/v1/keys/x/y", "/admin"] {
        let reply = app.get(path).await;
        assert_eq!(reply.body["error"]["message"], "route not found", "{path}");
    }
}

async fn a_real_listener_records_the_client_address_and_request_id(mut app: TestApp) {
    let application = app.application.take().expect("not yet serving");
    let addr = application.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let admin_key = app.admin_key.clone();
    let (status, request_id) = tokio::task::spawn_blocking(move || {
        let response = ureq::post(&format!("http://{addr}/v1/keys"))
            .header("x-api-key", &admin_key)
            .header("user-agent", "keyplane-test/1.0")
            .header("content-type", "application/json")
            .send(json!({"name": "over TCP", "environment": "live"}).to_string())
            .expect("request");
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), request_id)
    })
    .await
    .expect("client");
    assert_eq!(status, 201);
    let last = app.audit().await.pop().expect("record");
    assert_eq!(last["ip"], "127.0.0.1");
    assert_eq!(last["user_agent"], "keyplane-test/1.0");
    assert_eq!(last["request_id"].as_str(), request_id.as_deref());
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("graceful shutdown");
}

async fn without_a_metrics_listener_metrics_are_served_on_the_main_listener(mut app: TestApp) {
    let application = app.application.take().expect("not yet serving");
    assert!(application.metrics_addr().expect("bound").is_none());
    let addr = application.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let (status, text) = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{addr}/healthz"))
            .call()
            .expect("healthz");
        let mut response = ureq::get(&format!("http://{addr}/metrics"))
            .call()
            .expect("request");
        let text = response.body_mut().read_to_string().expect("body");
        (response.status().as_u16(), text)
    })
    .await
    .expect("client");
    assert_eq!(status, 200);
    assert!(
        text.contains("route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("graceful shutdown");
}
