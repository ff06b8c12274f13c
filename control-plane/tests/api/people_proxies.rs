//! Behind a reverse proxy the operator trusts (`--trusted-proxies`): sign-in is throttled per
//! client that the proxy names in `X-Forwarded-For`, and the audit log records that client. A
//! peer the operator does not trust gains nothing by writing the header.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, StatusCode};
use keyplane_control_plane::Config;
use keyplane_control_plane::accounts::throttle::PER_ADDRESS;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::people::{Browser, HOST, browser_request};
use crate::helpers::{Reply, TestApp};

backends!(
    config = trusting_the_loopback_proxy;
    behind_a_trusted_proxy_each_client_has_its_own_allowance,
    the_audit_log_records_the_client_behind_the_proxy,
);

const PROXY: &str = "127.0.0.1";

fn trusting_the_loopback_proxy(config: &mut Config) {
    config.trusted_proxies = PROXY.parse().expect("valid setting");
}

/// A request from the connection's `peer`, with `forwarded` as its `X-Forwarded-For`.
async fn send_from(
    app: &TestApp,
    peer: &str,
    forwarded: Option<&str>,
    mut request: axum::http::request::Builder,
    body: Option<Value>,
) -> Reply {
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).expect("valid request");
    let peer = SocketAddr::new(peer.parse().expect("address"), 41_000);
    request.extensions_mut().insert(ConnectInfo(peer));
    app.send(request).await
}

async fn sign_in_from(app: &TestApp, peer: &str, forwarded: Option<&str>, email: &str) -> Reply {
    let request = browser_request(Method::POST, "/v1/sessions", None, None);
    let body = json!({"email": email, "password": "not the password at all"});
    send_from(app, peer, forwarded, request, Some(body)).await
}

async fn behind_a_trusted_proxy_each_client_has_its_own_allowance(app: TestApp) {
    app.first_owner().await;
    let (_, burst) = PER_ADDRESS;
    // One client behind the proxy uses its address's allowance (a new email each time, so the
    // per-email limit stays out of the way).
    for n in 0..burst {
        let email = format!("a{n}@example.com");
        let reply = sign_in_from(&app, PROXY, Some("1.1.1.1, 198.51.100.7"), &email).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let next = sign_in_from(&app, PROXY, Some("198.51.100.7"), "next@example.com").await;
    assert_eq!(next.code(), "too_many_attempts");
    // Another client behind the same proxy has its own.
    let other = sign_in_from(&app, PROXY, Some("198.51.100.8"), "next@example.com").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);

    // A peer that is not a trusted proxy names a new client each time: ignored, it is one
    // client.
    let direct = "203.0.113.9";
    for n in 0..burst {
        let spoofed = format!("192.0.2.{n}");
        let email = format!("d{n}@example.com");
        let reply = sign_in_from(&app, direct, Some(&spoofed), &email).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let spoofed = sign_in_from(&app, direct, Some("192.0.2.200"), "last@example.com").await;
    assert_eq!(spoofed.code(), "too_many_attempts");
}

async fn the_audit_log_records_the_client_behind_the_proxy(app: TestApp) {
    let owner: Browser = app.first_owner().await;
    let origin = format!("https://{HOST}");
    let create = |peer: &'static str, forwarded: &'static str, name: &'static str| {
        let request = browser_request(Method::POST, "/v1/keys", Some(&owner.cookie), Some(&origin))
            .header("x-csrf-token", owner.csrf.clone());
        let body = json!({"name": name, "environment": "test"});
        send_from(&app, peer, Some(forwarded), request, Some(body))
    };
    let proxied = create(PROXY, "198.51.100.7", "through the proxy").await;
    assert_eq!(proxied.status, StatusCode::CREATED, "{:?}", proxied.body);
    let direct = create("203.0.113.9", "192.0.2.1", "straight in").await;
    assert_eq!(direct.status, StatusCode::CREATED, "{:?}", direct.body);
    let records = app.audit().await;
    let ip_of = |name: &str| {
        records
            .iter()
            .find(|record| record["action"] == "key_created" && record["details"]["name"] == name)
            .map(|record| record["ip"].clone())
    };
    assert_eq!(ip_of("through the proxy"), Some(json!("198.51.100.7")));
    assert_eq!(ip_of("straight in"), Some(json!("203.0.113.9")));
}
