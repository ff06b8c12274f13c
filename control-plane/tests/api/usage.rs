//! Usage: signed ingestion from edges (idempotent, attributed, bounded), last use kept current,
//! the per-key usage API and daily counts, the listing's last-use filters, and retention.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keyplane_control_plane::store::{AuditContext, NewKey};
use keyplane_shared::ids::{KeyId, OrgId, RequestId};
use keyplane_shared::sync::{self, SignedRequest, SyncSecret};
use keyplane_shared::usage::{MAX_BATCH_EVENTS, USAGE_PATH, UsageBatch, UsageEvent};
use keyplane_shared::{ApiKey, Environment, ScopeSet, Timestamp};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::{Reply, T0, TestApp};

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
    the_usage_api_filters_by_time_status_and_ip,
    usage_pages_cover_every_event_once_in_order,
    another_organizations_key_usage_answers_404,
    daily_counts_split_at_utc_midnight,
    listing_filters_find_unused_keys_and_keys_used_from_an_address,
    retention_deletes_only_events_older_than_the_cutoff,
    serving_runs_the_retention_cleanup_and_stops_it_on_shutdown,
);

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A key created through the API, with its organization.
#[derive(Clone, Copy)]
struct Key {
    id: KeyId,
    org: OrgId,
}

impl TestApp {
    /// Creates a key in Acme (the test's organization).
    async fn usage_key(&self, name: &str) -> Key {
        let (_, record) = self
            .create_key(json!({"name": name, "environment": "live"}))
            .await;
        let id: KeyId = record["id"].as_str().expect("id").parse().expect("key id");
        Key {
            id,
            org: self.org_of(id).await,
        }
    }

    /// A key of `org` written through the store, skipping the API's Argon2 hash of its secret
    /// (a second per key in a debug build): for tests that need hundreds of keys.
    async fn stored_key(&self, org: OrgId, name: &str) -> Key {
        let secret = ApiKey::generate(&self.state.prefix, Environment::Live).expect("CSPRNG");
        let pepper = self.state.peppers.current();
        let new = NewKey {
            id: KeyId::generate().expect("CSPRNG"),
            org_id: org,
            name: name.to_owned(),
            environment: Environment::Live,
            truncated: secret.truncated(),
            digest: pepper.digest(&secret),
            pepper_id: pepper.id(),
            secret_hash: "$argon2id$not-checked-by-this-test".to_owned(),
            scopes: ScopeSet::default(),
            rate_limit: None,
            metadata: serde_json::Map::new(),
            expires_at: None,
            created_by: None,
        };
        let context = AuditContext {
            actor: None,
            actor_scopes: ScopeSet::default(),
            ip: None,
            user_agent: None,
            request_id: "req_test".to_owned(),
        };
        let record = self
            .state
            .store
            .create_key(new, &context, self.state.now())
            .await
            .expect("stored");
        Key { id: record.id, org }
    }

    async fn org_of(&self, key: KeyId) -> OrgId {
        use sqlx::Row as _;
        let row = sqlx::query("SELECT org_id FROM api_keys WHERE id = $1")
            .bind(key.to_bytes().to_vec())
            .fetch_one(self.store.pool())
            .await
            .expect("key row");
        OrgId::from_bytes(row.get::<Vec<u8>, _>(0).try_into().expect("16 bytes"))
    }

    async fn stored_events(&self) -> i64 {
        use sqlx::Row as _;
        sqlx::query("SELECT COUNT(*) FROM usage_events")
            .fetch_one(self.store.pool())
            .await
            .expect("count")
            .get::<i64, _>(0)
    }

    /// `POST /v1/edge/usage` with `body`, signed with `secret` over `signed_body` at `now`.
    async fn post_usage_with(
        &self,
        body: Vec<u8>,
        secret: &SyncSecret,
        signed_body: &[u8],
        now_secs: i64,
    ) -> Reply {
        let header = sync::sign_now(
            secret,
            now_secs,
            &SignedRequest {
                method: "POST",
                path_and_query: USAGE_PATH,
                body: signed_body,
            },
        )
        .expect("CSPRNG");
        let request = Request::builder()
            .method(Method::POST)
            .uri(USAGE_PATH)
            .header(sync::SIGNATURE_HEADER, header)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// A correctly signed `POST /v1/edge/usage` of raw bytes.
    async fn post_usage_bytes(&self, body: Vec<u8>) -> Reply {
        let now = self.state.now().as_millis() / 1000;
        let signed = body.clone();
        self.post_usage_with(body, &self.state.edge_secret, &signed, now)
            .await
    }

    /// A correctly signed batch from edge `fra`; asserts a 200 and returns the receipt.
    async fn ingest(&self, events: &[UsageEvent]) -> Value {
        let batch = UsageBatch {
            edge: "fra".into(),
            events: events.to_vec(),
        };
        let reply = self
            .post_usage_bytes(serde_json::to_vec(&batch).expect("json"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    async fn usage(&self, key: Key, query: &str) -> Reply {
        self.get(&format!("/v1/keys/{}/usage{query}", key.id)).await
    }

    /// The request ids of a usage page, in order.
    async fn usage_ids(&self, key: Key, query: &str) -> Vec<String> {
        let reply = self.usage(key, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
        ids(&reply.body["data"], "request_id")
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        let text = self.call(Method::GET, "/metrics", None, None).await.body;
        let text = text.as_str().expect("text").to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .map(|value| value.trim().parse().expect("a number"))
    }
}

fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|item| item[field].as_str().expect("id").to_owned())
        .collect()
}

fn request_id(n: u32) -> RequestId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RequestId::from_bytes(bytes)
}

/// A use of `key` at `at`, with request id `n`.
fn event(n: u32, key: Key, at: i64, status: u16, ip: Option<&str>) -> UsageEvent {
    UsageEvent::new(
        request_id(n),
        Some((key.id, key.org)),
        Timestamp(at),
        "GET",
        &format!("/v1/contacts/{n}"),
        status,
        ip,
    )
}

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
        // Within the signature's window of clock difference: stored.
        value(8, t + 299_000, 204, "192.0.2.8"),
    ];
    let body = json!({"edge": "fra", "events": events})
        .to_string()
        .into_bytes();
    let reply = app.post_usage_bytes(body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"received": 9, "stored": 3}));
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
    for (outcome, count) in [("stored", 3.0), ("malformed", 3.0), ("out_of_range", 3.0)] {
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

async fn the_usage_api_filters_by_time_status_and_ip(app: TestApp) {
    let key = app.usage_key("ci").await;
    let t = T0.as_millis();
    let a = Some("203.0.113.1");
    let b = Some("203.0.113.2");
    app.ingest(&[
        event(1, key, t - 2 * DAY, 200, a), // outside the default window
        event(2, key, t - 3 * HOUR, 200, a),
        event(3, key, t - 2 * HOUR, 404, b),
        event(4, key, t - HOUR, 429, b),
        event(5, key, t - 30 * MINUTE, 500, a),
        event(6, key, t - MINUTE, 429, a),
    ])
    .await;
    let id = |n: u32| request_id(n).to_string();
    let cases: [(&str, Vec<String>); 9] = [
        ("", vec![id(6), id(5), id(4), id(3), id(2)]),
        (
            "?from=2027-01-13T00:00:00Z",
            vec![id(6), id(5), id(4), id(3), id(2), id(1)],
        ),
        // `from` is inclusive, `to` exclusive.
        (
            "?from=2027-01-15T05:00:00Z&to=2027-01-15T07:00:00Z",
            vec![id(3), id(2)],
        ),
        // Without `from`, the day before `to`.
        ("?to=2027-01-14T07:00:00Z", vec![id(1)]),
        ("?status=429", vec![id(6), id(4)]),
        ("?status=4xx", vec![id(6), id(4), id(3)]),
        ("?status=5xx", vec![id(5)]),
        ("?ip=203.0.113.2", vec![id(4), id(3)]),
        ("?ip=203.0.113.1&status=4XX", vec![id(6)]),
    ];
    for (query, expected) in cases {
        assert_eq!(app.usage_ids(key, query).await, expected, "{query}");
    }
    for query in [
        "?status=4x",
        "?status=600",
        "?status=ok",
        "?from=yesterday",
        "?from=2027-01-15T07:00:00Z&to=2027-01-15T07:00:00Z",
        "?limit=0",
        "?limit=1001",
        "?cursor=garbage",
        "?ip=",
        "?sort=asc",
    ] {
        let reply = app.usage(key, query).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.code(), "invalid_request", "{query}");
    }
}

async fn usage_pages_cover_every_event_once_in_order(app: TestApp) {
    let key = app.usage_key("ci").await;
    let t = T0.as_millis();
    // 250 events over the last 20 hours, five at each time (the cursor must break ties), sent
    // in a shuffled order in three batches.
    let mut events: Vec<_> = (0..250u32)
        .map(|n| event(n, key, t - 20 * HOUR + i64::from(n / 5) * MINUTE, 200, None))
        .collect();
    events.sort_by_key(|e| (e.request_id.to_bytes()[15].wrapping_mul(37), e.request_id));
    for chunk in events.chunks(100) {
        app.ingest(chunk).await;
    }
    let mut expected: Vec<_> = events.iter().map(|e| (e.at, e.request_id)).collect();
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.iter().map(|(_, id)| id.to_string()).collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 100, "pagination ends");
        let query = match &cursor {
            Some(cursor) => format!("?limit=7&cursor={cursor}"),
            None => "?limit=7".to_owned(),
        };
        let reply = app.usage(key, &query).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let items = ids(&reply.body["data"], "request_id");
        assert!(items.len() <= 7);
        seen.extend(items);
        // Paging takes time: the default window must not slide under the client.
        app.clock.advance_secs(600);
        cursor = reply.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected, "every event once, newest first");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 250);
}

async fn another_organizations_key_usage_answers_404(app: TestApp) {
    let key = app.usage_key("ci").await;
    app.ingest(&[event(1, key, T0.as_millis() - MINUTE, 200, None)])
        .await;
    let (_, globex_admin) =
        keyplane_control_plane::bootstrap::create_organization(&app.state, "Globex")
            .await
            .expect("second org");
    let other = globex_admin.expose_secret();
    for path in [
        format!("/v1/keys/{}/usage", key.id),
        format!("/v1/keys/{}/usage/daily", key.id),
        "/v1/keys/key_0000000000000000000000/usage".to_owned(),
        "/v1/keys/not-a-key/usage/daily".to_owned(),
    ] {
        let reply = app.call(Method::GET, &path, Some(other), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.code(), "not_found", "{path}");
    }
    let own = app.usage_ids(key, "").await;
    assert_eq!(own.len(), 1, "the owner reads it");
    let anonymous = app
        .call(
            Method::GET,
            &format!("/v1/keys/{}/usage", key.id),
            None,
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn daily_counts_split_at_utc_midnight(app: TestApp) {
    let key = app.usage_key("ci").await;
    // T0 is 2027-01-15T08:00:00Z.
    let midnight = T0.as_millis() - 8 * HOUR;
    app.ingest(&[
        event(1, key, midnight - 2 * DAY, 200, None),
        event(2, key, midnight - 1, 200, None),
        event(3, key, midnight - 1, 429, None),
        event(4, key, midnight - HOUR, 200, None),
        event(5, key, midnight, 200, None),
        event(6, key, midnight + 7 * HOUR, 500, None),
    ])
    .await;
    let reply = app
        .get(&format!(
            "/v1/keys/{}/usage/daily?from=2027-01-12&to=2027-01-15",
            key.id
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "key_id": key.id.to_string(),
            "from": "2027-01-12",
            "to": "2027-01-15",
            "data": [
                {"day": "2027-01-13", "requests": 1, "by_status": {"200": 1}},
                {"day": "2027-01-14", "requests": 3, "by_status": {"200": 2, "429": 1}},
                {"day": "2027-01-15", "requests": 2, "by_status": {"200": 1, "500": 1}},
            ],
        })
    );
    // RFC 3339 times name their UTC day; the default range is the 30 days up to today.
    let one_day = app
        .get(&format!(
            "/v1/keys/{}/usage/daily?from=2027-01-14T23:59:59Z&to=2027-01-14T00:00:00Z",
            key.id
        ))
        .await;
    assert_eq!(one_day.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(one_day.body["data"][0]["requests"], 3);
    let default = app.get(&format!("/v1/keys/{}/usage/daily", key.id)).await;
    assert_eq!(
        (&default.body["from"], &default.body["to"]),
        (&json!("2026-12-17"), &json!("2027-01-15"))
    );
    assert_eq!(default.body["data"].as_array().map(Vec::len), Some(3));
    for query in [
        "?from=2026-01-01&to=2027-01-15",
        "?from=2027-01-15&to=2027-01-14",
        "?from=15/01/2027",
        "?days=3",
    ] {
        let reply = app
            .get(&format!("/v1/keys/{}/usage/daily{query}", key.id))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

async fn listing_filters_find_unused_keys_and_keys_used_from_an_address(app: TestApp) {
    let old = app.usage_key("old").await;
    let recent = app.usage_key("recent").await;
    let never = app.usage_key("never").await;
    let t = T0.as_millis();
    app.ingest(&[
        event(1, old, t - 2 * HOUR, 200, Some("192.0.2.10")),
        event(2, recent, t - 10 * MINUTE, 200, Some("198.51.100.66")),
    ])
    .await;
    let admin_id = {
        let all = app.get("/v1/keys?limit=200").await.body;
        let names: Vec<_> = all["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|key| key["name"] == "Initial admin key")
            .map(|key| key["id"].as_str().expect("id").to_owned())
            .collect();
        names[0].clone()
    };
    let listed = |query: &'static str| {
        let app = &app;
        async move {
            let reply = app.get(&format!("/v1/keys{query}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
            ids(&reply.body["data"], "id")
                .into_iter()
                .collect::<BTreeSet<_>>()
        }
    };
    let set = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<_>>();
    let (old_id, recent_id, never_id) = (
        old.id.to_string(),
        recent.id.to_string(),
        never.id.to_string(),
    );
    assert_eq!(
        listed("?never_used=true").await,
        set(&[&never_id, &admin_id])
    );
    assert_eq!(
        listed("?never_used=false").await,
        set(&[&old_id, &recent_id])
    );
    assert_eq!(
        listed("?last_used_ip=198.51.100.66").await,
        set(&[&recent_id])
    );
    assert_eq!(
        listed("?last_used_before=2027-01-15T07:00:00Z").await,
        set(&[&old_id, &never_id, &admin_id]),
        "not used in the last hour, never-used keys included"
    );
    assert_eq!(
        listed("?last_used_before=2027-01-15T07:00:00Z&never_used=false").await,
        set(&[&old_id])
    );
    // The expected addresses: keys last used from anywhere else (never-used keys left out).
    assert_eq!(
        listed("?last_used_ip_not=192.0.2.10").await,
        set(&[&recent_id])
    );
    assert_eq!(
        listed("?last_used_ip_not=192.0.2.10,%20198.51.100.66").await,
        set(&[])
    );
    assert_eq!(
        listed("?last_used_ip_not=203.0.113.1").await,
        set(&[&old_id, &recent_id])
    );
    let record = app.get(&format!("/v1/keys/{}", recent.id)).await.body;
    assert_eq!(record["last_used_ip"], "198.51.100.66");
    let fifty_one = (0..51)
        .map(|n| format!("192.0.2.{n}"))
        .collect::<Vec<_>>()
        .join(",");
    for query in [
        "?never_used=maybe".to_owned(),
        "?last_used_before=last-week".to_owned(),
        "?last_used_ip=".to_owned(),
        "?last_used_ip_not=".to_owned(),
        "?last_used_ip_not=192.0.2.1,,192.0.2.2".to_owned(),
        format!("?last_used_ip_not={fifty_one}"),
    ] {
        let reply = app.get(&format!("/v1/keys{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

async fn retention_deletes_only_events_older_than_the_cutoff(app: TestApp) {
    let key = app.usage_key("ci").await;
    let cutoff = T0.as_millis() - 30 * DAY;
    app.ingest(&[
        event(1, key, cutoff - DAY, 200, None),
        event(2, key, cutoff - 1, 200, None),
        event(3, key, cutoff, 200, None),
        event(4, key, T0.as_millis() - DAY, 200, None),
    ])
    .await;
    let deleted = app
        .state
        .store
        .delete_usage_before(Timestamp(cutoff))
        .await
        .expect("delete");
    assert_eq!(deleted, 2);
    let left = app.usage_ids(key, "?from=2026-01-01T00:00:00Z").await;
    assert_eq!(left, [request_id(4).to_string(), request_id(3).to_string()]);
    // Deleting again finds nothing; the key's last use is not the log's to change.
    assert_eq!(
        app.state
            .store
            .delete_usage_before(Timestamp(cutoff))
            .await
            .expect("delete"),
        0
    );
    let record = app.get(&format!("/v1/keys/{}", key.id)).await.body;
    assert_eq!(record["last_used_at"], "2027-01-14T08:00:00.000Z");
}

async fn serving_runs_the_retention_cleanup_and_stops_it_on_shutdown(mut app: TestApp) {
    let key = app.usage_key("ci").await;
    app.ingest(&[
        event(1, key, T0.as_millis() - 31 * DAY, 200, None),
        event(2, key, T0.as_millis() - DAY, 200, None),
    ])
    .await;
    let application = app.application.take().expect("not yet serving");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    // The cleanup sweeps once at start (the test's settings keep 30 days). It counts the
    // deletion once the DELETE has returned, so both are awaited.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = app.stored_events().await;
        let expired = app.metric("keyplane_usage_events_expired_total").await;
        if events == 1 && expired == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old event is deleted and counted: {events} stored, {expired:?} expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns promptly, its background tasks stopped")
        .expect("joined")
        .expect("served");
    assert_eq!(
        app.usage_ids(key, "?from=2026-01-01T00:00:00Z").await,
        [request_id(2).to_string()]
    );
}
