//! `key.rate_limited`: a key's first 429 of an hour, found in the usage the edges report,
//! announced once (a resent batch, or more 429s that hour, announce nothing more).

use keyplane_shared::usage::UsageBatch;
use serde_json::json;

use crate::backends;
use crate::helpers::usage::{HOUR, MINUTE, event};
use crate::helpers::{T0, TestApp};

backends!(the_first_429_of_an_hour_is_announced_once);

async fn the_first_429_of_an_hour_is_announced_once(app: TestApp) {
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.rate_limited"]}),
    )
    .await;
    let key = app.usage_key("busy").await;
    let calm = app.usage_key("calm").await;
    // The hour T0 falls in, and the next.
    let hour_start = T0.as_millis().div_euclid(HOUR) * HOUR;
    let batch = |events| UsageBatch {
        edge: "edge-1".into(),
        events,
    };
    let first = batch(vec![
        event(1, key, hour_start + MINUTE, 200, Some("192.0.2.1")),
        event(2, key, hour_start + 3 * MINUTE, 429, Some("192.0.2.1")),
        event(3, key, hour_start + 2 * MINUTE, 429, Some("192.0.2.1")),
        event(4, calm, hour_start + 2 * MINUTE, 200, Some("192.0.2.9")),
    ]);
    app.store
        .ingest_usage(&first, app.state.now())
        .await
        .expect("ingest");
    let events = app.take_due_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "key.rate_limited");
    assert_eq!(events[0]["data"]["key_id"], key.id.to_string());
    // The hour's first 429, whatever the batch's order.
    assert_eq!(events[0]["data"]["path"], "/v1/contacts/3");
    assert_eq!(events[0]["data"]["edge"], "edge-1");

    // Resent, or more 429s within the hour: nothing more.
    app.store
        .ingest_usage(&first, app.state.now())
        .await
        .expect("ingest");
    app.store
        .ingest_usage(
            &batch(vec![event(5, key, hour_start + 50 * MINUTE, 429, None)]),
            app.state.now(),
        )
        .await
        .expect("ingest");
    assert!(app.take_due_events().await.is_empty());
    // The next hour's first 429 is announced.
    app.store
        .ingest_usage(
            &batch(vec![event(6, key, hour_start + 61 * MINUTE, 429, None)]),
            app.state.now(),
        )
        .await
        .expect("ingest");
    let next = app.take_due_events().await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["data"]["path"], "/v1/contacts/6");
}
