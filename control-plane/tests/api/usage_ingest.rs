//! Usage ingestion: signed batches from edges (idempotent, attributed, bounded) and the last
//! use they keep current.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keyplane_shared::Timestamp;
use keyplane_shared::ids::KeyId;
use keyplane_shared::sync::{self, SyncSecret};
use keyplane_shared::usage::{MAX_BATCH_EVENTS, USAGE_PATH, UsageBatch, UsageEvent};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::usage::{DAY, HOUR, Key, MINUTE, event, request_id};
use crate::helpers::{T0, TestApp};

backends!(
    unsigned_forged_and_stale_batches_are_refused_and_store_nothing,
    a_batch_is_stored_with_every_field,
    a_batch_sent_twice_stores_each_event_once,
    concurrent_overlapping_batches_store_each_event_once,
    events_without_a_known_key_of_their_organization_are_not_stored,
    oversized_batches_are_413_and_malformed_ones_400,
    events_that_cannot_be_stored_are_skipped_without_sinking_the_batch,
    a_copy_dropped_inside_a_batch_does_not_set_the_last_use,
    an_unsigned_batch_is_refused_before_its_body_is_read,
    last_use_follows_the_newest_event_and_never_moves_backwards,
    a_batch_over_more_keys_than_one_update_holds_sets_every_last_use,
);

async fn unsigned_forged_and_stale_batches_are_refused_and_store_nothing(app: TestApp) {
    let key = app.usage_key("ci").await;
    let batch = UsageBatch {
        edge: "fra".into(),
        events: vec![event(1, key, T0.as_millis(), 200, Some("203.0.113.9"))],
    };
    let body = serde_json::to_vec(&batch).expect("json");
    let now = T0.as_millis() / 1000;
    let unsigned = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(USAGE_PATH)
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .expect("request"),
        )
        .await;
    let forged_secret = SyncSecret::new(vec![9; 32]).expect("secret");
    let forged = app
        .post_usage_with(body.clone(), &forged_secret, &body, now)
        .await;
    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] = b' ';
    let altered = app
        .post_usage_with(tampered, &app.state.edge_secret, &body, now)
        .await;
    let stale = app
        .post_usage_with(body.clone(), &app.state.edge_secret, &body, now - 600)
        .await;
    for (what, reply) in [
        ("unsigned", unsigned),
        ("forged", forged),
        ("altered body", altered),
        ("stale", stale),
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.code(), "invalid_signature", "{what}");
    }
    assert_eq!(app.stored_events().await, 0);
    let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
    assert_eq!(record["last_used_at"], Value::Null, "no use recorded");
    // The same batch, signed right, is stored: the refusals above were the signature's doing.
    let receipt = app.post_usage_bytes(body).await;
    assert_eq!(receipt.body, json!({"received": 1, "stored": 1}));
}

async fn a_batch_is_stored_with_every_field(app: TestApp) {
    let key = app.usage_key("ci").await;
    let other = app.usage_key("other").await;
    let at = T0.as_millis() - 5 * MINUTE;
    let post = UsageEvent::new(
        request_id(7),
        Some((key.id, key.org)),
        Timestamp(at + 1),
        "POST",
        "/v1/triggers",
        429,
        Some("2001:db8::1"),
    );
    let receipt = app
        .ingest(&[
            event(6, key, at, 200, Some("203.0.113.9")),
            post,
            event(8, other, at, 201, None),
        ])
        .await;
    assert_eq!(receipt, json!({"received": 3, "stored": 3}));
    let reply = app.usage(key, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "data": [
                {
                    "request_id": request_id(7).to_string(),
                    "at": "2027-01-15T07:55:00.001Z",
                    "method": "POST",
                    "path": "/v1/triggers",
                    "status": 429,
                    "ip": "2001:db8::1",
                    "edge": "fra",
                },
                {
                    "request_id": request_id(6).to_string(),
                    "at": "2027-01-15T07:55:00.000Z",
                    "method": "GET",
                    "path": "/v1/contacts/6",
                    "status": 200,
                    "ip": "203.0.113.9",
                    "edge": "fra",
                },
            ],
            "next_cursor": null,
        })
    );
    assert_eq!(
        app.usage_ids(other, "").await,
        [request_id(8).to_string()],
        "each event under its own key"
    );
}

async fn a_batch_sent_twice_stores_each_event_once(app: TestApp) {
    let key = app.usage_key("ci").await;
    let at = T0.as_millis() - MINUTE;
    let events: Vec<_> = (1..=3).map(|n| event(n, key, at, 200, None)).collect();
    assert_eq!(
        app.ingest(&events).await,
        json!({"received": 3, "stored": 3})
    );
    assert_eq!(
        app.ingest(&events).await,
        json!({"received": 3, "stored": 0}),
        "a resent batch stores nothing again"
    );
    // A batch repeating an event within itself, and overlapping the first.
    let mixed = [
        event(4, key, at, 200, None),
        event(4, key, at, 200, None),
        event(3, key, at, 200, None),
    ];
    assert_eq!(
        app.ingest(&mixed).await,
        json!({"received": 3, "stored": 1})
    );
    assert_eq!(app.stored_events().await, 4);
    assert_eq!(app.usage_ids(key, "").await.len(), 4);
    assert_eq!(
        app.metric("keyplane_usage_events_total{outcome=\"stored\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(
        app.metric("keyplane_usage_events_total{outcome=\"duplicate\"}")
            .await,
        Some(5.0)
    );
}

async fn concurrent_overlapping_batches_store_each_event_once(app: TestApp) {
    let mut keys = Vec::new();
    for name in ["a", "b", "c"] {
        keys.push(app.usage_key(name).await);
    }
    let t = T0.as_millis();
    let events: Vec<_> = (0..300u32)
        .map(|n| event(n, keys[n as usize % 3], t - i64::from(n), 200, None))
        .collect();
    // The same batch three times (retries racing the original) and an overlapping one in the
    // opposite order (another edge): all in flight at once, on the same events and keys.
    let mut reversed: Vec<_> = events[150..].to_vec();
    reversed.extend((300..350u32).map(|n| event(n, keys[0], t, 200, None)));
    reversed.reverse();
    let (a, b, c, d) = tokio::join!(
        app.ingest(&events),
        app.ingest(&events),
        app.ingest(&events),
        app.ingest(&reversed)
    );
    let stored: u64 = [a, b, c, d]
        .iter()
        .map(|receipt| receipt["stored"].as_u64().expect("stored"))
        .sum();
    assert_eq!(
        stored, 350,
        "each event stored by exactly one of the batches"
    );
    assert_eq!(app.stored_events().await, 350);
    let record = app.get(&format!("/v1/keys/{}", keys[0].id)).await.body;
    assert_eq!(record["last_used_at"], "2027-01-15T08:00:00.000Z");
}

async fn events_without_a_known_key_of_their_organization_are_not_stored(app: TestApp) {
    let key = app.usage_key("ci").await;
    let victim = app.usage_key("victim").await;
    let (globex, _) = keyplane_control_plane::bootstrap::create_organization(&app.state, "Globex")
        .await
        .expect("second org");
    let at = T0.as_millis() - MINUTE;
    let keyless = UsageEvent::new(request_id(1), None, Timestamp(at), "GET", "/", 401, None);
    let unknown = event(
        2,
        Key {
            id: KeyId::from_bytes([0xAB; 16]),
            org: key.org,
        },
        at,
        401,
        None,
    );
    let other_org = event(
        3,
        Key {
            id: victim.id,
            org: globex.id,
        },
        at,
        200,
        Some("198.51.100.7"),
    );
    let mut no_org = event(4, victim, at, 200, Some("198.51.100.7"));
    no_org.org_id = None;
    let good = event(5, key, at, 200, None);
    assert_eq!(
        app.ingest(&[keyless, unknown, other_org, no_org, good])
            .await,
        json!({"received": 5, "stored": 1})
    );
    assert_eq!(app.stored_events().await, 1);
    assert_eq!(app.usage_ids(key, "").await, [request_id(5).to_string()]);
    assert!(app.usage_ids(victim, "").await.is_empty());
    let victim_record = app.get(&format!("/v1/keys/{}", victim.id)).await.body;
    assert_eq!(
        victim_record["last_used_at"],
        Value::Null,
        "a misattributed event is no use of the key"
    );
    for (outcome, count) in [
        ("stored", 1.0),
        ("unattributed", 1.0),
        ("unknown_key", 1.0),
        ("org_mismatch", 2.0),
    ] {
        assert_eq!(
            app.metric(&format!(
                "keyplane_usage_events_total{{outcome=\"{outcome}\"}}"
            ))
            .await,
            Some(count),
            "{outcome}"
        );
    }
}

async fn oversized_batches_are_413_and_malformed_ones_400(app: TestApp) {
    let key = app.usage_key("ci").await;
    let at = T0.as_millis() - MINUTE;
    // A full batch with long paths is well over the API's usual 64 KiB body limit: accepted.
    let long_path = format!("/{}", "p".repeat(500));
    let full: Vec<_> = (0..MAX_BATCH_EVENTS as u32)
        .map(|n| {
            let mut e = event(n, key, at, 200, Some("203.0.113.9"));
            e.path = long_path.clone();
            e
        })
        .collect();
    let body = serde_json::to_vec(&UsageBatch {
        edge: "fra".into(),
        events: full.clone(),
    })
    .expect("json");
    assert!(body.len() > 512 * 1024, "{} bytes", body.len());
    let reply = app.post_usage_bytes(body).await;
    assert_eq!(reply.body, json!({"received": 1000, "stored": 1000}));
    assert_eq!(app.stored_events().await, 1000);

    // One event too many.
    let mut too_many = full;
    too_many.push(event(5000, key, at, 200, None));
    let body = serde_json::to_vec(&UsageBatch {
        edge: "fra".into(),
        events: too_many,
    })
    .expect("json");
    let reply = app.post_usage_bytes(body).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.code(), "payload_too_large");
    // More bytes than allowed, even if they are only padding.
    let mut padded = br#"{"edge": "fra", "events": []}"#.to_vec();
    padded.resize(2 * 1024 * 1024 + 1, b' ');
    let reply = app.post_usage_bytes(padded).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.code(), "payload_too_large");

    let good = serde_json::to_value(event(6000, key, at, 200, None)).expect("json");
    let malformed = [
        (b"not json".to_vec(), "invalid_json"),
        (br#"{"events": []}"#.to_vec(), "invalid_json"),
        (br#"{"edge": "fra", "events": {}}"#.to_vec(), "invalid_json"),
        (
            json!({"edge": "fra east", "events": [good]})
                .to_string()
                .into_bytes(),
            "invalid_request",
        ),
    ];
    for (body, code) in malformed {
        let text = String::from_utf8_lossy(&body).into_owned();
        let reply = app.post_usage_bytes(body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(reply.code(), code, "{text}");
    }
    assert_eq!(app.stored_events().await, 1000, "nothing more stored");
}

async fn events_that_cannot_be_stored_are_skipped_without_sinking_the_batch(app: TestApp) {
    let key = app.usage_key("ci").await;
    let t = T0.as_millis();
    let value = |n: u32, at: i64, status: u16, ip: &str| {
        serde_json::to_value(event(n, key, at, status, Some(ip))).expect("json")
    };
    let mut bad_id = value(3, t, 200, "192.0.2.3");
    bad_id["request_id"] = json!("req_nope");
    let mut missing_field = value(4, t, 200, "192.0.2.4");
    missing_field
        .as_object_mut()
        .expect("object")
        .remove("path");
    // A NUL no edge sends, which PostgreSQL's text cannot hold: skipped, not a failed batch
    // the edge would send again for ever.
    let mut nul_path = value(9, t, 200, "192.0.2.9");
    nul_path["path"] = json!("/v1/a\u{0}b");
    let mut unknown_field = value(2, t - MINUTE, 200, "192.0.2.2");
    unknown_field["added_by_a_newer_edge"] = json!(true);
    let ten_years = 10 * 365 * DAY;
    let events = [
        value(1, t - 2 * MINUTE, 200, "192.0.2.1"),
        unknown_field,
        bad_id,
        missing_field,
        value(5, t + ten_years, 200, "192.0.2.99"),
        value(6, t, 42, "192.0.2.6"),
        value(7, t, 600, "192.0.2.7"),
        json!("not an event"),
        nul_path,
        // Within the signature's window of clock difference: stored.
        value(8, t + 299_000, 204, "192.0.2.8"),
    ];
    let body = json!({"edge": "fra", "events": events})
        .to_string()
        .into_bytes();
    let reply = app.post_usage_bytes(body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"received": 10, "stored": 3}));
    let mut stored = app
        .usage_ids(key, "?from=2027-01-14T00:00:00Z&to=2027-01-16T00:00:00Z")
        .await;
    stored.sort();
    assert_eq!(
        stored,
        [request_id(1), request_id(2), request_id(8)].map(|id| id.to_string())
    );
    // The far-future event did not become the key's last use.
    let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
    assert_eq!(record["last_used_at"], "2027-01-15T08:04:59.000Z");
    assert_eq!(record["last_used_ip"], "192.0.2.8");
    for (outcome, count) in [("stored", 3.0), ("malformed", 4.0), ("out_of_range", 3.0)] {
        assert_eq!(
            app.metric(&format!(
                "keyplane_usage_events_total{{outcome=\"{outcome}\"}}"
            ))
            .await,
            Some(count),
            "{outcome}"
        );
    }
}

async fn a_copy_dropped_inside_a_batch_does_not_set_the_last_use(app: TestApp) {
    let key = app.usage_key("ci").await;
    let t = T0.as_millis();
    let first = event(1, key, t - 10 * MINUTE, 200, Some("192.0.2.1"));
    // Same request id, later and from elsewhere: not stored, so not the last use either.
    let copy = event(1, key, t - MINUTE, 200, Some("192.0.2.66"));
    assert_eq!(
        app.ingest(&[first, copy]).await,
        json!({"received": 2, "stored": 1})
    );
    let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
    assert_eq!(record["last_used_at"], "2027-01-15T07:50:00.000Z");
    assert_eq!(record["last_used_ip"], "192.0.2.1");
}

async fn an_unsigned_batch_is_refused_before_its_body_is_read(app: TestApp) {
    // Larger than any batch may be: with a valid signature this is 413; without one, 401
    // comes first, so an unauthenticated caller cannot make the server buffer it.
    let body = vec![b' '; 3 * 1024 * 1024];
    for header in [None, Some("t=1,n=00,v1=00")] {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(USAGE_PATH)
            .header("content-type", "application/json");
        if let Some(header) = header {
            request = request.header(sync::SIGNATURE_HEADER, header);
        }
        let reply = app
            .send(request.body(Body::from(body.clone())).expect("request"))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(reply.code(), "invalid_signature");
    }
    let reply = app.post_usage_bytes(body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn last_use_follows_the_newest_event_and_never_moves_backwards(app: TestApp) {
    let key = app.usage_key("ci").await;
    let record = || async { app.get(&format!("/v1/keys/{}", key.id)).await.body };
    let last_use = |record: &Value| {
        (
            record["last_used_at"].as_str().map(str::to_owned),
            record["last_used_ip"].as_str().map(str::to_owned),
        )
    };
    let t = T0.as_millis();
    // The batch is not in time order: the newest event wins, not the last one.
    app.ingest(&[
        event(1, key, t - 10_000, 200, Some("192.0.2.1")),
        event(2, key, t - 5_000, 200, Some("192.0.2.2")),
        event(3, key, t - 8_000, 200, Some("192.0.2.3")),
    ])
    .await;
    let expected = (
        Some("2027-01-15T07:59:55.000Z".to_owned()),
        Some("192.0.2.2".to_owned()),
    );
    assert_eq!(last_use(&record().await), expected);
    // A late batch of older events stores them but leaves the last use alone.
    let receipt = app
        .ingest(&[event(4, key, t - 60_000, 200, Some("192.0.2.4"))])
        .await;
    assert_eq!(receipt["stored"], 1);
    assert_eq!(last_use(&record().await), expected, "never backwards");
    // A revoked key still presented is a use (the one users most want to see), without an IP.
    let revoked = app
        .post(
            &format!("/v1/keys/{}/revoke", key.id),
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    app.ingest(&[event(5, key, t + 1_000, 401, None)]).await;
    let after = record().await;
    assert_eq!(
        last_use(&after),
        (Some("2027-01-15T08:00:01.000Z".to_owned()), None)
    );
    assert_eq!(after["status"], "revoked");
    assert_eq!(
        app.usage_ids(key, "?status=401").await,
        [request_id(5).to_string()]
    );
}

/// The last-use UPDATE covers at most 300 keys per statement; a batch naming more keys takes
/// several, and every key must come out with its own newest use.
async fn a_batch_over_more_keys_than_one_update_holds_sets_every_last_use(app: TestApp) {
    const KEYS: u32 = 400;
    let org = app.usage_key("first").await.org;
    let mut keys = Vec::new();
    for n in 0..KEYS {
        keys.push(app.stored_key(org, &format!("k{n}")).await);
    }
    // Key n: its newest use n + 1 s before T0 from 10.<n>, and an older one from elsewhere,
    // the two in different halves of the batch.
    let t = T0.as_millis();
    let ip = |n: u32| format!("10.{}.{}.1", n / 256, n % 256);
    let mut events = Vec::new();
    for (n, key) in (0..KEYS).zip(&keys) {
        events.push(event(
            n,
            *key,
            t - 1_000 * i64::from(n + 1),
            200,
            Some(&ip(n)),
        ));
    }
    for (n, key) in (0..KEYS).zip(&keys) {
        let older = t - 1_000 * i64::from(n + 1) - HOUR;
        events.push(event(KEYS + n, *key, older, 200, Some("192.0.2.99")));
    }
    events.reverse();
    let receipt = app.ingest(&events).await;
    assert_eq!(receipt["stored"], 2 * KEYS, "{receipt}");
    for (n, key) in (0..KEYS).zip(&keys) {
        let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
        let before = 8 * 3600 - i64::from(n + 1);
        let expected = format!(
            "2027-01-15T{:02}:{:02}:{:02}.000Z",
            before / 3600,
            before % 3600 / 60,
            before % 60
        );
        assert_eq!(record["last_used_at"], expected.as_str(), "key {n}");
        assert_eq!(record["last_used_ip"], ip(n).as_str(), "key {n}");
    }
}
