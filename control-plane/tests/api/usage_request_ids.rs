//! Usage ingestion with both forms of request id: the time-ordered ids edges make now
//! (`RequestId::generate_ordered`) and the random ones older edges still send, in one batch
//! and in batches racing each other, stay idempotent.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::RequestId;
use keyplane_shared::usage::UsageEvent;
use serde_json::json;

use crate::backends;
use crate::helpers::usage::{Key, MINUTE};
use crate::helpers::{T0, TestApp};

backends!(
    ordered_and_random_request_ids_are_stored_once,
    concurrent_batches_of_ordered_ids_store_each_event_once,
);

fn use_of(key: Key, request_id: RequestId, at: i64) -> UsageEvent {
    UsageEvent::new(
        request_id,
        Some((key.id, key.org)),
        Timestamp(at),
        "GET",
        "/v1/contacts",
        200,
        Some("203.0.113.9"),
    )
}

async fn ordered_and_random_request_ids_are_stored_once(app: TestApp) {
    let key = app.usage_key("ci").await;
    let at = T0.as_millis() - MINUTE;
    let mut events = Vec::new();
    for n in 0..40 {
        let id = if n % 2 == 0 {
            RequestId::generate_ordered(Timestamp(at + n)).expect("CSPRNG")
        } else {
            RequestId::generate().expect("CSPRNG")
        };
        events.push(use_of(key, id, at + n));
    }
    assert_eq!(
        app.ingest(&events).await,
        json!({"received": 40, "stored": 40})
    );
    assert_eq!(
        app.ingest(&events).await,
        json!({"received": 40, "stored": 0}),
        "a resent batch stores nothing, whatever the form of its ids"
    );
    // Another batch overlapping half of the first, in the opposite order.
    let mut overlapping: Vec<_> = events[20..].to_vec();
    overlapping.push(use_of(
        key,
        RequestId::generate_ordered(Timestamp(at)).expect("CSPRNG"),
        at,
    ));
    overlapping.reverse();
    assert_eq!(
        app.ingest(&overlapping).await,
        json!({"received": 21, "stored": 1})
    );
    assert_eq!(app.stored_events().await, 41);
    let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
    assert_eq!(record["last_used_at"], "2027-01-15T07:59:00.039Z");
}

async fn concurrent_batches_of_ordered_ids_store_each_event_once(app: TestApp) {
    let key = app.usage_key("ci").await;
    let at = T0.as_millis() - MINUTE;
    // One millisecond's ids (the edge's clock stands still while a Worker runs): they share
    // their first six bytes and differ in the random rest.
    let events: Vec<_> = (0..300)
        .map(|_| {
            let id = RequestId::generate_ordered(Timestamp(at)).expect("CSPRNG");
            use_of(key, id, at)
        })
        .collect();
    let (a, b, c) = tokio::join!(
        app.ingest(&events),
        app.ingest(&events),
        app.ingest(&events[100..])
    );
    let stored: u64 = [a, b, c]
        .iter()
        .map(|receipt| receipt["stored"].as_u64().expect("stored"))
        .sum();
    assert_eq!(stored, 300, "each event stored by exactly one batch");
    assert_eq!(app.stored_events().await, 300);
}
