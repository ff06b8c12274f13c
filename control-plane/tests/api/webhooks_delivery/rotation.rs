//! Signing secrets after rotations: the secret a rotation replaces signs beside the new one for
//! 24 hours, and so do the ones replaced before it within that time (a second rotation, say
//! because the first one's secret was not copied, leaves the receiver's secret working), up to
//! `MAX_PREVIOUS_SECRETS`.

use axum::http::HeaderMap;
use keyplane_control_plane::secrets::webhook_signing::{key_of, signature};
use keyplane_control_plane::store::webhooks::MAX_PREVIOUS_SECRETS;
use serde_json::{Value, json};

use super::{Receiver, endpoint, round};
use crate::backends;
use crate::helpers::TestApp;

backends!(
    after_a_rotation_both_secrets_sign_for_24_hours,
    a_second_rotation_keeps_the_first_secret_signing_for_its_24_hours,
);

/// Whether the delivery (`headers`, `event`) carries a signature made with `secret`.
fn signed_with(headers: &HeaderMap, event: &Value, secret: &str) -> bool {
    let key = key_of(&secret.to_owned().into()).expect("key");
    let expected = signature(
        &key,
        headers["webhook-id"].to_str().expect("id"),
        headers["webhook-timestamp"]
            .to_str()
            .expect("timestamp")
            .parse()
            .expect("seconds"),
        &event.to_string(),
    );
    signatures(headers).any(|signature| signature == expected)
}

fn signatures(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers["webhook-signature"]
        .to_str()
        .expect("signature")
        .split(' ')
}

/// The endpoint's new secret, and the time the view says the replaced ones sign until.
async fn rotate(app: &TestApp, id: &str) -> (String, Value) {
    let rotated = app
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(
        rotated.status,
        axum::http::StatusCode::OK,
        "{:?}",
        rotated.body
    );
    (
        rotated.body["secret"].as_str().expect("secret").to_owned(),
        rotated.body["webhook"]["previous_secret_expires_at"].clone(),
    )
}

/// Makes a key and delivers its `key.created`: what the receiver got for it.
async fn deliver(app: &TestApp, receiver: &Receiver, name: &str) -> (HeaderMap, Value) {
    app.create_key(json!({"name": name, "environment": "live"}))
        .await;
    assert_eq!(round(app).await.delivered, 1);
    receiver
        .got
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a delivery")
}

async fn after_a_rotation_both_secrets_sign_for_24_hours(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let (id, old) = endpoint(&app, &receiver.url, &["key.created"]).await;
    let (new, _) = rotate(&app, &id).await;
    let (during, during_event) = deliver(&app, &receiver, "during").await;
    assert_eq!(signatures(&during).count(), 2);
    assert!(signed_with(&during, &during_event, &new) && signed_with(&during, &during_event, &old));
    app.clock.advance_secs(24 * 3600);
    let (after, after_event) = deliver(&app, &receiver, "after").await;
    assert!(signed_with(&after, &after_event, &new));
    assert!(
        !signed_with(&after, &after_event, &old),
        "the old secret still signs"
    );
}

async fn a_second_rotation_keeps_the_first_secret_signing_for_its_24_hours(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let (id, original) = endpoint(&app, &receiver.url, &["key.created"]).await;
    let (first, first_until) = rotate(&app, &id).await;
    app.clock.advance_secs(3600);
    // The first rotation's secret was not copied: rotated again an hour later.
    let (second, second_until) = rotate(&app, &id).await;
    assert_ne!(first_until, second_until);
    let (headers, event) = deliver(&app, &receiver, "after two rotations").await;
    assert_eq!(signatures(&headers).count(), 3);
    for secret in [&second, &first, &original] {
        assert!(signed_with(&headers, &event, secret));
    }
    // The view names when the last of them stops: 24 hours after the second rotation.
    let view = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(view.body["previous_secret_expires_at"], second_until);
    // 24 hours after the first rotation the original secret stops; the first rotation's
    // secret signs until 24 hours after the second.
    app.clock.advance_secs(23 * 3600);
    let (headers, event) = deliver(&app, &receiver, "a day after the first").await;
    assert_eq!(signatures(&headers).count(), 2);
    assert!(signed_with(&headers, &event, &second) && signed_with(&headers, &event, &first));
    assert!(!signed_with(&headers, &event, &original));
    app.clock.advance_secs(3600);
    let (headers, event) = deliver(&app, &receiver, "a day after the second").await;
    assert_eq!(signatures(&headers).count(), 1);
    assert!(signed_with(&headers, &event, &second));
    // Rotations in a row keep the last few secrets they replaced, no more.
    let mut replaced = vec![second];
    for _ in 0..MAX_PREVIOUS_SECRETS + 2 {
        replaced.push(rotate(&app, &id).await.0);
    }
    let current = replaced.pop().expect("the current secret");
    let (headers, event) = deliver(&app, &receiver, "after many rotations").await;
    assert_eq!(signatures(&headers).count(), 1 + MAX_PREVIOUS_SECRETS);
    assert!(signed_with(&headers, &event, &current));
    let (dropped, kept) = replaced.split_at(replaced.len() - MAX_PREVIOUS_SECRETS);
    assert_eq!(dropped.len(), 2);
    for secret in kept {
        assert!(
            signed_with(&headers, &event, secret),
            "a kept secret does not sign"
        );
    }
    for secret in dropped {
        assert!(
            !signed_with(&headers, &event, secret),
            "a dropped secret signs"
        );
    }
}
