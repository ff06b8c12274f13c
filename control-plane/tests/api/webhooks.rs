//! The webhook endpoints API: made, listed, changed and removed by who manages the
//! organization only; the signing secret shown once and stored nowhere; URLs that could reach
//! the inside refused; every change audited; another organization's endpoints out of sight.

use axum::http::{Method, StatusCode};
use keyplane_control_plane::Config;
use keyplane_control_plane::bootstrap::create_organization;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;

fn no_local_dev(config: &mut Config) {
    config.local_dev = false;
}

backends!(
    an_endpoint_is_made_listed_changed_and_removed_and_each_change_is_audited,
    another_organizations_endpoints_are_out_of_sight,
);

mod public_only {
    use super::*;
    backends!(
        config = no_local_dev;
        bad_urls_event_types_and_callers_are_refused_with_a_clear_error,
    );
}

async fn an_endpoint_is_made_listed_changed_and_removed_and_each_change_is_audited(app: TestApp) {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/keyplane", "events": ["key.revoked", "key.created"], "description": "ops"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let secret = made.body["secret"].as_str().expect("secret").to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let id = made.body["webhook"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("whk_"));
    // The documented order, whatever order they were asked in.
    assert_eq!(
        made.body["webhook"]["events"],
        json!(["key.created", "key.revoked"])
    );
    assert_eq!(made.body["webhook"]["enabled"], true);

    let listed = app.get("/v1/webhooks").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    let shown = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(shown.body, made.body["webhook"]);
    for answer in [&listed.body, &shown.body] {
        assert!(
            !answer.to_string().contains(&secret) && !answer.to_string().contains("whsec_"),
            "the secret was shown again: {answer}"
        );
    }

    let changed = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"events": ["member.removed"], "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["events"], json!(["member.removed"]));
    assert_eq!(changed.body["enabled"], false);
    assert_eq!(changed.body["url"], "https://hooks.example.com/keyplane");

    let rotated = app
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().expect("secret");
    assert_ne!(new_secret, secret);
    assert!(rotated.body["webhook"]["previous_secret_expires_at"].is_string());

    // Neither secret is anywhere in the database.
    let stored = app.stored_text(&["webhook_endpoints", "audit_log"]).await;
    assert!(
        !stored.contains(&secret) && !stored.contains(new_secret),
        "a signing secret is stored"
    );

    let gone = app
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/webhooks/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let actions: Vec<Value> = app
        .audit()
        .await
        .iter()
        .map(|record| record["action"].clone())
        .filter(|action| action.as_str().is_some_and(|a| a.starts_with("webhook_")))
        .collect();
    assert_eq!(
        actions,
        [
            "webhook_created",
            "webhook_updated",
            "webhook_secret_rotated",
            "webhook_deleted"
        ]
    );
}

async fn another_organizations_endpoints_are_out_of_sight(app: TestApp) {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/acme", "events": ["key.created"]}),
        )
        .await;
    let id = made.body["webhook"]["id"].as_str().expect("id").to_owned();
    let (_, other) = create_organization(&app.state, "Globex")
        .await
        .expect("second org");
    let other = other.expose_secret();
    let path = format!("/v1/webhooks/{id}");
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"enabled": false}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/rotate-secret"), None),
        (Method::GET, format!("{path}/attempts"), None),
    ] {
        let answer = app.call(method.clone(), &path, Some(other), body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let theirs = app
        .call(Method::GET, "/v1/webhooks", Some(other), None)
        .await;
    assert_eq!(theirs.body["items"], json!([]));
    // Unchanged for its own organization.
    assert_eq!(app.get(&path).await.body["enabled"], true);
}

async fn bad_urls_event_types_and_callers_are_refused_with_a_clear_error(app: TestApp) {
    for (body, expected) in [
        (
            json!({"url": "http://hooks.example.com/", "events": ["key.created"]}),
            "url",
        ),
        (
            json!({"url": "https://127.0.0.1/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://localhost./", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://100.64.0.1/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://10.1.2.3/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://[fd00::1]/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://[fe80::1]/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://[::ffff:127.0.0.1]/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://[64:ff9b::a00:1]/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://0.0.0.0/", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": ["key.deleted"]}),
            "unknown event type `key.deleted`",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": []}),
            "at least one event type",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": ["key.created"], "secret": "mine"}),
            "unknown field",
        ),
    ] {
        let answer = app.post("/v1/webhooks", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(app.get("/v1/webhooks").await.body["items"], json!([]));

    // A key that manages keys does not manage the organization's webhooks.
    let (key_manager, _) = app
        .create_key(json!({"name": "ops", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    let refused = app
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&key_manager),
            Some(json!({"url": "https://hooks.example.com/", "events": ["key.created"]})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let listing = app
        .call(Method::GET, "/v1/webhooks", Some(&key_manager), None)
        .await;
    assert_eq!(listing.status, StatusCode::FORBIDDEN);

    // At most 20 endpoints.
    for n in 0..20 {
        let made = app
            .post(
                "/v1/webhooks",
                json!({"url": format!("https://hooks.example.com/{n}"), "events": ["key.created"]}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED);
    }
    let over = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/21", "events": ["key.created"]}),
        )
        .await;
    assert_eq!(over.status, StatusCode::CONFLICT);
    assert_eq!(over.code(), "too_many_webhooks");
}
