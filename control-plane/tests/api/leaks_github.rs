//! GitHub's secret-scanning partner reports, signed with a test key pair: a signed report
//! revokes the live keys in it and answers GitHub's feedback; an unsigned, badly signed or
//! tampered one changes nothing; a replay is harmless; without configuration the route is 404.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyplane_control_plane::Config;
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::backends;
use crate::helpers::{TestApp, spawn_app_with};

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

fn github_key() -> SigningKey {
    SigningKey::from_slice(&[7; 32]).expect("a P-256 key")
}

/// Writes GitHub's key list (the test key) into the data directory and points the
/// configuration at it.
fn trust_github(config: &mut Config) {
    let pem = github_key()
        .verifying_key()
        .to_public_key_pem(Default::default())
        .expect("PEM");
    let list = json!({"public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]});
    let path = config.data_dir.join("github-keys.json");
    std::fs::write(&path, list.to_string()).expect("write the keys");
    config.github_scanning_keys = Some(path.display().to_string());
}

backends!(
    config = trust_github;
    a_signed_report_revokes_its_live_keys_and_answers_feedback,
    an_unsigned_badly_signed_or_tampered_report_changes_nothing,
    a_report_of_a_thousand_tokens_is_read_and_one_over_4_mib_is_refused,
);

async fn send(app: &TestApp, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
    let mut request = Request::post("/v1/leaks/github")
        .header("content-type", "application/json")
        .header("github-public-key-identifier", KEY_ID);
    if let Some(signature) = signature {
        request = request.header("github-public-key-signature", signature);
    }
    let reply = app
        .send(request.body(Body::from(body.to_vec())).expect("request"))
        .await;
    (reply.status, reply.body)
}

fn signed(body: &[u8]) -> String {
    let signature: DerSignature = github_key().sign(body);
    STANDARD.encode(signature.as_bytes())
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

async fn a_signed_report_revokes_its_live_keys_and_answers_feedback(app: TestApp) {
    let (live, record) = app
        .create_key(json!({"name": "committed", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let unknown = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    let report = json!([
        {"token": live, "type": "keyplane_api_key", "url": "https://github.com/acme/app/blob/abc/.env", "source": "content"},
        {"token": unknown.expose_secret(), "type": "keyplane_api_key", "url": "https://github.com/x", "source": "commit"},
        {"token": "sk_live_not-even-a-key", "type": "keyplane_api_key", "url": "https://github.com/y", "source": "issue"},
    ])
    .to_string();
    let (status, feedback) = send(&app, report.as_bytes(), Some(signed(report.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK, "{feedback}");
    assert_eq!(
        feedback,
        json!([
            {"token_hash": hash(&live), "token_type": "keyplane_api_key", "label": "true_positive"},
            {"token_hash": hash(unknown.expose_secret()), "token_type": "keyplane_api_key", "label": "false_positive"},
            {"token_hash": hash("sk_live_not-even-a-key"), "token_type": "keyplane_api_key", "label": "false_positive"},
        ])
    );
    let shown = app.get(&format!("/v1/keys/{id}")).await.body;
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revocation_reason"], "compromised");
    assert_eq!(
        shown["revocation_note"],
        "reported as leaked by github at https://github.com/acme/app/blob/abc/.env"
    );
    // Audited once, as a revocation (the e2e test sees the edge refuse the key).
    let audited = app.audit().await;
    assert_eq!(
        audited
            .iter()
            .filter(|r| r["action"] == "key_revoked")
            .count(),
        1
    );

    // A replay answers the same and revokes, audits nothing more.
    let (status, again) = send(&app, report.as_bytes(), Some(signed(report.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, feedback);
    assert_eq!(app.audit().await.len(), audited.len());
}

async fn an_unsigned_badly_signed_or_tampered_report_changes_nothing(app: TestApp) {
    let (live, record) = app
        .create_key(json!({"name": "committed", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let report =
        json!([{"token": live, "type": "keyplane_api_key", "url": "u", "source": "content"}])
            .to_string();
    let impostor = SigningKey::from_slice(&[9; 32]).expect("key");
    let forged: DerSignature = impostor.sign(report.as_bytes());
    let tampered = report.replace("content", "commit");
    for (body, signature) in [
        (report.clone(), None),
        (report.clone(), Some(STANDARD.encode(forged.as_bytes()))),
        (report.clone(), Some("not base64 at all".to_owned())),
        (tampered, Some(signed(report.as_bytes()))),
    ] {
        let (status, answer) = send(&app, body.as_bytes(), signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature");
    }
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.body["status"],
        "active"
    );
    // Signed, but not a report: a clear 400.
    let (status, _) = send(&app, b"{\"token\": 1}", Some(signed(b"{\"token\": 1}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn without_configuration_the_route_is_not_there() {
    let app = spawn_app_with(
        keyplane_control_plane::store::sql::Backend::Sqlite,
        crate::helpers::default_config,
    )
    .await
    .expect("SQLite");
    let (status, answer) = send(&app, b"[]", Some(signed(b"[]"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

/// GitHub's keys URL, where nothing answers (port 9, discard, is closed here).
fn keys_url_down(config: &mut Config) {
    config.github_scanning_keys =
        Some("http://127.0.0.1:9/meta/public_keys/secret_scanning".into());
}

#[tokio::test]
async fn when_the_keys_were_never_fetched_a_report_is_answered_503_and_changes_nothing() {
    let app = spawn_app_with(
        keyplane_control_plane::store::sql::Backend::Sqlite,
        keys_url_down,
    )
    .await
    .expect("SQLite");
    let (live, record) = app
        .create_key(json!({"name": "committed", "environment": "live"}))
        .await;
    let report =
        json!([{"token": live, "type": "keyplane_api_key", "url": "u", "source": "content"}])
            .to_string();
    let (status, answer) = send(&app, report.as_bytes(), Some(signed(report.as_bytes()))).await;
    // GitHub retries a report that was not answered 2xx.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable");
    assert_eq!(
        answer["error"]["message"],
        "GitHub's secret-scanning keys could not be fetched; retry later"
    );
    let id = record["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.body["status"],
        "active"
    );
}

async fn a_report_of_a_thousand_tokens_is_read_and_one_over_4_mib_is_refused(app: TestApp) {
    let (live, _) = app
        .create_key(json!({"name": "committed", "environment": "live"}))
        .await;
    // 1,000 tokens with long URLs: about 200 KB, over the rest of the API's 64 KiB.
    let mut tokens = vec![live.clone()];
    for _ in 1..1000 {
        let key = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
        tokens.push(key.expose_secret().to_owned());
    }
    let items: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| json!({"token": token, "type": "keyplane_api_key",
            "url": format!("https://github.com/acme/app/blob/0123456789abcdef0123456789abcdef01234567/config/file{n}.env"),
            "source": "content"}))
        .collect();
    let report = Value::Array(items).to_string();
    assert!(report.len() > 150_000, "{}", report.len());
    let (status, feedback) = send(&app, report.as_bytes(), Some(signed(report.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK, "{feedback}");
    let labels: Vec<&str> = feedback
        .as_array()
        .expect("feedback")
        .iter()
        .filter_map(|item| item["label"].as_str())
        .collect();
    assert_eq!(labels.len(), 1000);
    assert_eq!(
        labels
            .iter()
            .filter(|label| **label == "true_positive")
            .count(),
        1
    );

    // Over 4 MiB: a JSON 413, nothing read.
    let huge = format!("[{}]", " ".repeat(4 * 1024 * 1024));
    let (status, answer) = send(&app, huge.as_bytes(), Some(signed(huge.as_bytes()))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    // Unsigned, it is refused before a byte of it is read: 401, not 413.
    let (status, answer) = send(&app, huge.as_bytes(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    // Other routes keep their 64 KiB.
    let reply = app
        .post("/v1/leaks/report", json!({"key": "x".repeat(70 * 1024)}))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        reply.body
    );
}
