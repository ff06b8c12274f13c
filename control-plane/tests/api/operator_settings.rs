//! A control plane started with operator settings: `/metrics` on its own listener
//! (`--metrics-listen`) and a lower rate-limit ceiling (`--max-rate-limit 50/min,burst=5`).

use axum::http::StatusCode;
use keyplane_control_plane::Config;
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    config = operator_settings;
    metrics_are_served_only_on_their_own_listener_when_one_is_given,
    the_rate_limit_ceiling_is_the_one_the_operator_set,
);

fn operator_settings(config: &mut Config) {
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.max_rate_limit = "50/min,burst=5".parse().expect("ceiling");
}

/// `GET url`: status and body text, whatever the status.
fn get(url: &str) -> (u16, String) {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    (status, body)
}

async fn metrics_are_served_only_on_their_own_listener_when_one_is_given(mut app: TestApp) {
    let application = app.application.take().expect("not yet serving");
    let main = application.local_addr().expect("bound");
    let metrics = application
        .metrics_addr()
        .expect("bound")
        .expect("a metrics listener");
    assert_ne!(main, metrics);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    let replies = tokio::task::spawn_blocking(move || {
        [
            get(&format!("http://{main}/metrics")),
            get(&format!("http://{main}/healthz")),
            get(&format!("http://{main}/openapi.json")),
            get(&format!("http://{metrics}/metrics")),
            get(&format!("http://{metrics}/v1/keys")),
            get(&format!("http://{metrics}/healthz")),
        ]
    })
    .await
    .expect("client");
    let [on_main, health, openapi, on_own, keys, health_on_metrics] = replies;
    assert_eq!(on_main.0, 404, "not on the main listener: {}", on_main.1);
    assert!(on_main.1.contains("route not found"), "{}", on_main.1);
    assert_eq!(health.0, 200);
    let document: serde_json::Value = serde_json::from_str(&openapi.1).expect("JSON");
    assert!(
        document["paths"].get("/metrics").is_none(),
        "not documented there"
    );
    assert!(document["paths"].get("/v1/keys").is_some());
    assert_eq!(on_own.0, 200);
    assert!(
        on_own.1.contains("keyplane_http_requests_total"),
        "{}",
        on_own.1
    );
    assert!(
        on_own.1.contains("route=\"/healthz\",status=\"200\""),
        "the main listener's requests are counted: {}",
        on_own.1
    );
    assert_eq!(keys.0, 404, "only /metrics there");
    assert_eq!(health_on_metrics.0, 404);
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("graceful shutdown");
}

async fn the_rate_limit_ceiling_is_the_one_the_operator_set(app: TestApp) {
    let create = |rate: u32, burst: u32| {
        json!({"name": "k", "environment": "live",
               "rate_limit": {"requests_per_minute": rate, "burst": burst}})
    };
    let (_, at) = app.create_key(create(50, 5)).await;
    let reply = app.post("/v1/keys", create(51, 5)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("ceiling of 50 requests per minute with bursts of 5 (50/min,burst=5)"),
        "{message}"
    );
    let id = at["id"].as_str().expect("id");
    let reply = app
        .patch(
            &format!("/v1/keys/{id}"),
            json!({"rate_limit": {"requests_per_minute": 50, "burst": 6}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
}
