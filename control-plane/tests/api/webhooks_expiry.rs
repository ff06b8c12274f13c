//! The expiry scheduler: `key.expiring` 7 days and 1 day before a key's expiry (a key already
//! within a day gets the one-day notice alone), `key.expired` once it passed, each once however
//! many instances look at the same time; revoked keys are not announced.

use axum::http::{Method, StatusCode};
use keyplane_control_plane::webhooks::expiry;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::mail::one_message_smtp_server;

backends!(expiries_are_announced_once_at_each_notice_and_when_they_pass);

mod by_email {
    use super::*;
    backends!(
        config = one_message_smtp_server;
        the_owner_of_a_key_expiring_soon_is_reminded_by_email,
    );
}

async fn the_owner_of_a_key_expiring_soon_is_reminded_by_email(app: TestApp) {
    let owner = app.first_owner().await;
    let made = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "nightly export", "environment": "live", "expires": "1h"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let truncated = made.body["record"]["truncated_key"]
        .as_str()
        .expect("truncated")
        .to_owned();
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    let mail_file = app.data_dir.path().join("mail.txt");
    crate::helpers::until("the reminder is received", || async { mail_file.exists() }).await;
    let mail = std::fs::read_to_string(&mail_file).expect("mail");
    assert!(mail.contains("RCPT TO:<owner@example.com>"), "{mail}");
    assert!(
        mail.contains("Subject: Your API key \"nightly export\" expires in 1 day"),
        "{mail}"
    );
    assert!(mail.contains(&truncated), "{mail}");
    // Once: the next look finds nothing to announce or send.
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}

fn summary(events: &[Value]) -> Vec<(String, String, Value)> {
    let mut list: Vec<(String, String, Value)> = events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["data"]["key"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event["data"]["notice_seconds_before"].clone(),
            )
        })
        .collect();
    list.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    list
}

async fn expiries_are_announced_once_at_each_notice_and_when_they_pass(app: TestApp) {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring", "key.expired"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    app.create_key(json!({"name": "month", "environment": "live", "expires": "30d"}))
        .await;
    app.create_key(json!({"name": "hour", "environment": "live", "expires": "1h"}))
        .await;
    app.create_key(json!({"name": "forever", "environment": "live"}))
        .await;
    let (_, revoked) = app
        .create_key(json!({"name": "revoked", "environment": "live", "expires": "1h"}))
        .await;
    let revoked_id = revoked["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{revoked_id}/revoke"),
        json!({"reason": "unused"}),
    )
    .await;

    // Two instances look at once: one notice.
    let (one, two) = tokio::join!(
        expiry::announce_due(&app.state),
        expiry::announce_due(&app.state)
    );
    assert_eq!(one.expect("look") + two.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "hour".into(), json!(86_400))]
    );
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);

    // The hour passes: expired, announced once.
    app.clock.advance_secs(3601);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expired".into(), "hour".into(), Value::Null)]
    );

    // The month: 7 days before, 1 day before, then expired; nothing in between.
    app.clock.advance_secs(22 * 86_400);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    app.clock.advance_secs(86_400);
    assert_eq!(
        summary(&{
            expiry::announce_due(&app.state).await.expect("look");
            app.take_due_events().await
        }),
        [("key.expiring".into(), "month".into(), json!(604_800))]
    );
    app.clock.advance_secs(6 * 86_400);
    expiry::announce_due(&app.state).await.expect("look");
    let day_before = app.take_due_events().await;
    assert_eq!(
        summary(&day_before),
        [("key.expiring".into(), "month".into(), json!(86_400))]
    );
    assert!(day_before[0]["data"]["expires_at"].is_string());
    app.clock.advance_secs(86_400);
    expiry::announce_due(&app.state).await.expect("look");
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expired".into(), "month".into(), Value::Null)]
    );
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}
