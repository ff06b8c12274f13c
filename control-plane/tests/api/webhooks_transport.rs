//! How a delivery travels: a receiver that never answers is given up on after the attempt
//! timeout (10 s) and recorded as `timeout`; a redirect is not followed (its target never hears
//! of the event) and counts as a failed attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::webhooks::delivery;
use serde_json::{Value, json};

use crate::helpers::{TestApp, default_config, spawn_app_with};

async fn sqlite_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, default_config)
        .await
        .expect("SQLite")
}

async fn endpoint_for(app: &TestApp, url: &str) -> String {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": url, "events": ["key.created"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    made.body["webhook"]["id"].as_str().expect("id").to_owned()
}

async fn one_round(app: &TestApp) {
    app.deliver_due().await;
}

async fn only_attempt(app: &TestApp, id: &str) -> Value {
    let page = app.get(&format!("/v1/webhooks/{id}/attempts")).await;
    let items = page.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{:?}", page.body);
    items[0].clone()
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_given_up_on_after_the_attempt_timeout() {
    let app = sqlite_app().await;
    // Accepts the connection, reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let id = endpoint_for(&app, &url).await;
    app.create_key(json!({"name": "slow", "environment": "live"}))
        .await;
    let started = std::time::Instant::now();
    one_round(&app).await;
    let waited = started.elapsed();
    let attempt = only_attempt(&app, &id).await;
    assert_eq!(attempt["outcome"], "timeout", "{attempt}");
    assert_eq!(attempt["status"], Value::Null);
    let duration = attempt["duration_ms"].as_u64().expect("duration");
    assert!(
        (delivery::ATTEMPT_TIMEOUT.as_millis() as u64..12_000).contains(&duration),
        "the attempt took {duration} ms"
    );
    assert!(
        waited < delivery::ATTEMPT_TIMEOUT + Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failure() {
    let app = sqlite_app().await;
    // Where the redirect points: it must never be reached.
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let target = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT
        }
    });
    let target_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target_url = format!(
        "http://{}/elsewhere",
        target_listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(target_listener, target).await });
    let location = target_url.clone();
    let redirector = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", location)],
                "moved",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, redirector).await });

    let id = endpoint_for(&app, &url).await;
    app.create_key(json!({"name": "moved", "environment": "live"}))
        .await;
    one_round(&app).await;
    let attempt = only_attempt(&app, &id).await;
    assert_eq!(attempt["outcome"], "http_error", "{attempt}");
    assert_eq!(attempt["status"], 307);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}
