//! Webhook delivery: events written with the change that causes them (none for a rolled-back
//! change), signed deliveries checked by an independent receiver (Python's `hmac`), retries
//! with backoff and every attempt recorded, an endpoint failing for 5 days disabled and
//! announced (but not one that failed once long ago and then was sent nothing), a deleted
//! endpoint's pending retries never sent, a claim whose worker died delivered after its lease,
//! redelivery (also while an attempt is in flight), the secrets replaced by rotations signing
//! for 24 hours (`rotation`), and the address guard at delivery time (the checks from outside
//! the worker: `verified`).

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use keyplane_control_plane::store::{Attempt, ClaimedDelivery, FailureStreak, NextStep};
use keyplane_control_plane::webhooks::delivery::{self, Tally};
use keyplane_shared::Timestamp;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::webhooks::{NEVER_DISABLING, attempt};

mod fairness;
mod recording;
mod rotation;
mod verified;

/// A receiver that answers with the status it is set to, and keeps what it got.
#[derive(Clone)]
struct Receiver {
    url: String,
    answer: Arc<Mutex<u16>>,
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let answer = Arc::new(Mutex::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (answer_in, got_in) = (answer.clone(), got.clone());
        let app =
            axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
                let (answer, got) = (answer_in.clone(), got_in.clone());
                async move {
                    let event = serde_json::from_str(&body).unwrap_or(Value::Null);
                    got.lock().expect("lock").push((headers, event));
                    let status = *answer.lock().expect("lock");
                    (
                        StatusCode::from_u16(status).expect("status"),
                        "the receiver says no, at length: ".repeat(20),
                    )
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, answer, got }
    }

    fn set(&self, status: u16) {
        *self.answer.lock().expect("lock") = status;
    }

    fn types(&self) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, event)| event["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let made = app
        .post("/v1/webhooks", json!({"url": url, "events": events}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    (
        made.body["webhook"]["id"].as_str().expect("id").to_owned(),
        made.body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// One claim of the due deliveries, with every attempt it started recorded.
async fn round(app: &TestApp) -> Tally {
    app.deliver_due().await
}

/// What a worker claims now (at most 10), under its lease.
async fn claim(app: &TestApp) -> Vec<ClaimedDelivery> {
    let now = app.state.now();
    let lease = Timestamp(now.as_millis() + delivery::LEASE.as_millis() as i64);
    app.store
        .claim_deliveries(now, lease, 10)
        .await
        .expect("claim")
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app.get(&format!("/v1/webhooks/{id}/attempts")).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    page.body["items"].as_array().cloned().unwrap_or_default()
}

backends!(
    failures_are_retried_with_backoff_and_every_attempt_is_recorded,
    an_endpoint_failing_for_five_days_is_disabled_audited_and_announced,
    an_endpoint_sent_nothing_for_a_while_starts_a_new_failing_streak,
    a_deleted_endpoints_pending_deliveries_are_never_sent,
    a_claim_whose_worker_died_is_delivered_once_its_lease_ends,
    a_redeliver_asked_for_while_an_attempt_is_in_flight_is_sent,
    a_slow_failure_recorded_after_a_later_success_starts_no_failing_streak,
    an_event_is_sent_again_on_request_and_attempts_page_through,
    workers_claiming_at_once_never_share_a_delivery,
);

async fn workers_claiming_at_once_never_share_a_delivery(app: TestApp) {
    let receiver = Receiver::start(204).await;
    endpoint(&app, &receiver.url, &["key.created"]).await;
    for n in 0..12 {
        app.create_key(json!({"name": format!("k{n}"), "environment": "live"}))
            .await;
    }
    let now = app.state.now();
    let lease = Timestamp(now.as_millis() + delivery::LEASE.as_millis() as i64);
    // Four workers (as on four instances) claim at the same moment, 5 at most each.
    let claims =
        futures_util::future::join_all((0..4).map(|_| app.store.claim_deliveries(now, lease, 5)))
            .await;
    let mut claimed: Vec<String> = Vec::new();
    for claim in claims {
        claimed.extend(
            claim
                .expect("claim")
                .iter()
                .map(|delivery| delivery.event_id.to_string()),
        );
    }
    let mut unique = claimed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), claimed.len(), "a delivery was claimed twice");
    assert_eq!(
        claimed.len(),
        12,
        "every due delivery was claimed by someone"
    );
}

async fn failures_are_retried_with_backoff_and_every_attempt_is_recorded(app: TestApp) {
    let receiver = Receiver::start(500).await;
    let (id, _) = endpoint(&app, &receiver.url, &["key.created"]).await;
    app.create_key(json!({"name": "one", "environment": "live"}))
        .await;
    assert_eq!(round(&app).await.attempted, 1);
    let first = attempts(&app, &id).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["status"], 500);
    assert_eq!(first[0]["outcome"], "http_error");
    assert_eq!(first[0]["attempt"], 1);
    assert_eq!(
        first[0]["response"].as_str().map(str::len),
        Some(256),
        "the first 256 bytes of the answer are kept"
    );
    let shown = app.get(&format!("/v1/webhooks/{id}")).await;
    assert!(shown.body["failing_since"].is_string(), "{:?}", shown.body);

    // The next attempt is due 10 s later, not before.
    app.clock.advance_secs(9);
    assert_eq!(round(&app).await.attempted, 0);
    app.clock.advance_secs(1);
    assert_eq!(round(&app).await.attempted, 1);
    // Then 30 s later; by then the receiver is back.
    receiver.set(204);
    app.clock.advance_secs(29);
    assert_eq!(round(&app).await.attempted, 0);
    app.clock.advance_secs(1);
    let delivered = round(&app).await;
    assert_eq!((delivered.attempted, delivered.delivered), (1, 1));
    let all = attempts(&app, &id).await;
    let outcomes: Vec<&str> = all.iter().filter_map(|a| a["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["delivered", "http_error", "http_error"]);
    // Every attempt carried the same id: a receiver can drop repeats.
    let ids: Vec<String> = receiver
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|(headers, _)| headers["webhook-id"].to_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter()
            .all(|each| each == &ids[0] && each.starts_with("evt_"))
    );
    let shown = app.get(&format!("/v1/webhooks/{id}")).await;
    assert!(
        shown.body["failing_since"].is_null(),
        "a success ends the streak"
    );
    // Nothing more is sent.
    app.clock.advance_secs(3600);
    assert_eq!(round(&app).await.attempted, 0);
}

async fn an_endpoint_failing_for_five_days_is_disabled_audited_and_announced(app: TestApp) {
    let broken = Receiver::start(503).await;
    let watcher = Receiver::start(204).await;
    // It wants the notice of a disabled endpoint too: never its own.
    let (broken_id, _) = endpoint(&app, &broken.url, &["key.created", "webhook.disabled"]).await;
    endpoint(&app, &watcher.url, &["webhook.disabled"]).await;
    app.create_key(json!({"name": "day 0", "environment": "live"}))
        .await;
    round(&app).await;
    // Four days and 23 hours of failures: a new event each day (each given up after 24 hours).
    for hour in 1..(5 * 24) {
        app.clock.advance_secs(3600);
        if hour % 24 == 0 {
            app.create_key(json!({"name": "daily", "environment": "live"}))
                .await;
        }
        assert_eq!(round(&app).await.disabled, 0, "disabled after {hour} hours");
    }
    assert_eq!(
        app.get(&format!("/v1/webhooks/{broken_id}")).await.body["enabled"],
        true
    );
    app.clock.advance_secs(3600);
    app.create_key(json!({"name": "day 5", "environment": "live"}))
        .await;
    assert_eq!(round(&app).await.disabled, 1);
    let shown = app.get(&format!("/v1/webhooks/{broken_id}")).await;
    assert_eq!(shown.body["enabled"], false);
    assert!(
        shown.body["disabled_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("failed since")),
        "{:?}",
        shown.body
    );
    let audit = app.audit().await;
    let disabled = audit
        .iter()
        .find(|record| record["action"] == "webhook_disabled")
        .expect("audited");
    assert_eq!(disabled["details"]["webhook_id"], broken_id);
    round(&app).await;
    assert_eq!(watcher.types(), ["webhook.disabled"]);
    let notice = watcher.got.lock().expect("lock")[0].1.clone();
    assert_eq!(notice["data"]["webhook_id"], broken_id);

    // Disabled, it gets nothing more; enabled again, it starts afresh.
    let before = broken.types().len();
    app.create_key(json!({"name": "after", "environment": "live"}))
        .await;
    app.clock.advance_secs(86_400);
    round(&app).await;
    assert_eq!(broken.types().len(), before);
    broken.set(204);
    let enabled = app
        .patch(
            &format!("/v1/webhooks/{broken_id}"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(enabled.body["enabled"], true);
    assert!(enabled.body["disabled_reason"].is_null());
    assert!(enabled.body["failing_since"].is_null());
    app.create_key(json!({"name": "back", "environment": "live"}))
        .await;
    // What was still pending when it was disabled goes out too, with the new event.
    assert!(round(&app).await.delivered >= 1);
    let names: Vec<Value> = broken
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, event)| event["data"]["key"]["name"].clone())
        .collect();
    assert_eq!(names.last(), Some(&json!("back")), "{names:?}");
    assert!(
        !broken.types().contains(&"webhook.disabled".to_owned()),
        "the disabled endpoint was sent its own notice"
    );
}

async fn a_claim_whose_worker_died_is_delivered_once_its_lease_ends(app: TestApp) {
    let receiver = Receiver::start(204).await;
    endpoint(&app, &receiver.url, &["key.created"]).await;
    app.create_key(json!({"name": "one", "environment": "live"}))
        .await;
    // A worker claims the delivery and dies before sending it.
    let claimed = claim(&app).await;
    assert_eq!(claimed.len(), 1);
    // Nobody else takes it while the lease holds...
    assert_eq!(round(&app).await.attempted, 0);
    app.clock.advance_secs(59);
    assert_eq!(round(&app).await.attempted, 0);
    // ...and the next worker delivers it once the lease has ended.
    app.clock.advance_secs(1);
    assert_eq!(round(&app).await.delivered, 1);
    assert_eq!(receiver.types(), ["key.created"]);
}

/// A slow attempt is recorded when it ends, after the attempts that went on meanwhile: its
/// failure, recorded after a success made later or in the same millisecond (attempts claimed
/// together share their start), leaves the endpoint as that success did (not failing), so a
/// late timeout cannot show a working endpoint as failing, nor start a streak that would
/// disable it.
async fn a_slow_failure_recorded_after_a_later_success_starts_no_failing_streak(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let streak = NEVER_DISABLING;
    for success_after_ms in [1_000, 0] {
        // An endpoint of its own each time, so that nothing recorded before counts.
        let (id, _) = endpoint(&app, &receiver.url, &["key.created"]).await;
        for name in ["slow", "quick"] {
            app.create_key(json!({"name": name, "environment": "live"}))
                .await;
        }
        let now = app.state.now();
        let mut claimed = claim(&app).await;
        assert_eq!(claimed.len(), 2);
        let (quick, slow) = (claimed.pop().expect("one"), claimed.pop().expect("other"));
        // The quick one succeeds after (or as) the slow one started, and is recorded first.
        let success_at = Timestamp(now.as_millis() + success_after_ms);
        let delivered = NextStep::Delivered;
        app.store
            .record_attempts(
                &[(quick, attempt(success_at, 204, "delivered"), delivered)],
                streak,
            )
            .await
            .expect("recorded");
        let retry = NextStep::RetryAt(Timestamp(now.as_millis() + 10_000));
        app.store
            .record_attempts(&[(slow, attempt(now, 503, "http_error"), retry)], streak)
            .await
            .expect("recorded");
        let shown = app.get(&format!("/v1/webhooks/{id}")).await;
        assert!(
            shown.body["failing_since"].is_null(),
            "success {success_after_ms} ms after: {:?}",
            shown.body
        );
        let path = format!("/v1/webhooks/{id}");
        let deleted = app
            .call(Method::DELETE, &path, Some(&app.admin_key), None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    }
}

/// A redeliver asked for while a worker's attempt of the same delivery is in flight (claimed,
/// the request on its way) is not settled by that attempt's outcome, whichever it is: the event
/// is sent again once the attempt is recorded.
async fn a_redeliver_asked_for_while_an_attempt_is_in_flight_is_sent(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let (id, _) = endpoint(&app, &receiver.url, &["key.created"]).await;
    app.create_key(json!({"name": "one", "environment": "live"}))
        .await;
    let redeliver = |event: String| {
        let (app, path) = (&app, format!("/v1/webhooks/{id}/events/{event}/redeliver"));
        async move {
            let again = app.post(&path, json!({})).await;
            assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
        }
    };
    let mut sent = None;
    for outcome in [NextStep::Delivered, NextStep::GiveUp] {
        if let Some(event) = sent.clone() {
            // Sent on the round before: due again.
            redeliver(event).await;
        }
        // A worker claims the delivery and sends it...
        let now = app.state.now();
        let mut claimed = claim(&app).await;
        let in_flight = claimed.pop().expect("the delivery");
        // ...while the redeliver is asked for...
        let event = in_flight.event_id.to_string();
        redeliver(event.clone()).await;
        sent = Some(event);
        // ...then records its outcome.
        let attempt = Attempt {
            at: now,
            duration_ms: 5,
            status: (outcome == NextStep::Delivered).then_some(204),
            outcome: "in flight".into(),
            response: String::new(),
        };
        app.store
            .record_attempts(
                &[(in_flight, attempt, outcome)],
                FailureStreak {
                    disable_after_ms: i64::MAX,
                    idle_gap_ms: 0,
                },
            )
            .await
            .expect("recorded");
        let sent_before = receiver.types().len();
        assert_eq!(round(&app).await.delivered, 1, "after {outcome:?}");
        assert_eq!(receiver.types().len(), sent_before + 1);
    }
    // Once sent, the delivery is settled: nothing more is due.
    assert_eq!(round(&app).await.attempted, 0);
}

async fn an_event_is_sent_again_on_request_and_attempts_page_through(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let (id, _) = endpoint(&app, &receiver.url, &["key.created", "key.updated"]).await;
    let (_, key) = app
        .create_key(json!({"name": "one", "environment": "live"}))
        .await;
    let key_id = key["id"].as_str().expect("id");
    // Later: deliveries due in the same millisecond go in no set order.
    app.clock.advance_secs(1);
    app.patch(&format!("/v1/keys/{key_id}"), json!({"name": "two"}))
        .await;
    assert_eq!(round(&app).await.delivered, 2);
    let event = attempts(&app, &id)
        .await
        .iter()
        .find(|attempt| attempt["event_type"] == "key.created")
        .and_then(|attempt| attempt["event_id"].as_str().map(str::to_owned))
        .expect("the creation's attempt");
    app.clock.advance_secs(1);
    let again = app
        .post(
            &format!("/v1/webhooks/{id}/events/{event}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    assert_eq!(round(&app).await.delivered, 1);
    assert_eq!(
        receiver.types(),
        ["key.created", "key.updated", "key.created"]
    );

    // One attempt a page, newest first, every attempt once.
    let mut seen = Vec::new();
    let mut path = format!("/v1/webhooks/{id}/attempts?limit=1");
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/webhooks/{id}/attempts?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0]["event_id"], event.as_str());
    assert_eq!(seen[0]["attempt"], 2);

    // Unknown events and forged cursors are refused clearly.
    let unknown = app
        .post(
            &format!("/v1/webhooks/{id}/events/evt_0000000000000000000000/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // A disabled endpoint is sent nothing: asking is a conflict, and nothing waits for it.
    let off = app
        .patch(&format!("/v1/webhooks/{id}"), json!({"enabled": false}))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    let refused = app
        .post(
            &format!("/v1/webhooks/{id}/events/{event}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);
    assert_eq!(refused.code(), "webhook_disabled");
    app.patch(&format!("/v1/webhooks/{id}"), json!({"enabled": true}))
        .await;
    assert_eq!(round(&app).await.delivered, 0);
    let forged = app
        .get(&format!("/v1/webhooks/{id}/attempts?cursor=nope"))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
}

async fn an_endpoint_sent_nothing_for_a_while_starts_a_new_failing_streak(app: TestApp) {
    let broken = Receiver::start(503).await;
    let (id, _) = endpoint(&app, &broken.url, &["key.created"]).await;
    app.create_key(json!({"name": "once", "environment": "live"}))
        .await;
    // Tried for a day and given up; then nothing to send for a month.
    for _ in 0..26 {
        round(&app).await;
        app.clock.advance_secs(3600);
    }
    app.clock.advance_secs(30 * 86_400);
    app.create_key(json!({"name": "a month later", "environment": "live"}))
        .await;
    // One failure a month after the last is not a month of failing: not disabled, and the
    // streak starts now.
    assert_eq!(round(&app).await.disabled, 0);
    let shown = app.get(&format!("/v1/webhooks/{id}")).await.body;
    assert_eq!(shown["enabled"], true, "{shown}");
    assert_eq!(
        shown["failing_since"],
        keyplane_control_plane::input::time::rfc3339(app.state.now())
    );
}

async fn a_deleted_endpoints_pending_deliveries_are_never_sent(app: TestApp) {
    let receiver = Receiver::start(503).await;
    let (id, _) = endpoint(&app, &receiver.url, &["key.created"]).await;
    app.create_key(json!({"name": "pending", "environment": "live"}))
        .await;
    round(&app).await;
    assert_eq!(receiver.types().len(), 1, "the first attempt");
    // Its retry is due in seconds; the endpoint goes first, and comes back healthy too late.
    let gone = app
        .call(
            axum::http::Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    receiver.set(204);
    for _ in 0..3 {
        app.clock.advance_secs(3600);
        assert_eq!(round(&app).await.delivered, 0);
    }
    assert_eq!(
        receiver.types().len(),
        1,
        "a deleted endpoint was sent a retry"
    );
}
