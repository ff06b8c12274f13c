//! Replication, control-plane side: the signed feed, the edge registry, and the pusher
//! against fake edges (axum servers on 127.0.0.1 that verify and record what they receive).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use keyplane_control_plane::replication::pusher;
use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::{decode_changes, decode_snapshot};
use keyplane_shared::{ChangeOp, KeyStatus};
use serde_json::json;

use crate::backends;
use crate::helpers::{Reply, TestApp, until};

backends!(
    the_feed_refuses_unsigned_forged_and_stale_requests,
    changes_follow_every_mutation_in_order,
    the_snapshot_equals_the_replayed_log_and_pulling_registers_the_edge,
    pulling_registers_and_updates_the_edge,
    the_pusher_delivers_signed_changes_retries_and_resends_after_a_gap,
    an_edge_that_applies_nothing_is_retried_with_backoff,
    a_stuck_edge_blocks_neither_the_api_nor_other_edges,
    serving_pushes_and_shutting_down_stops_the_pusher,
);

impl TestApp {
    /// `GET path` signed with the edge secret at the test clock's time.
    async fn signed_get(&self, path: &str) -> Reply {
        let now = self.state.now().as_millis() / 1000;
        self.signed_get_at(path, path, now).await
    }

    async fn signed_get_at(&self, path: &str, signed_path: &str, now: i64) -> Reply {
        let header = sync::sign_now(
            &self.state.edge_secret,
            now,
            &SignedRequest {
                method: "GET",
                path_and_query: signed_path,
                body: &[],
            },
        )
        .expect("CSPRNG");
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(sync::SIGNATURE_HEADER, header)
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    /// The raw bytes of a signed feed answer.
    async fn feed_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let answer = self.signed_feed(path).await;
        (answer.status, answer.headers, answer.body)
    }
}

async fn the_feed_refuses_unsigned_forged_and_stale_requests(app: TestApp) {
    let path = "/v1/edge/changes?after=0&edge=e1&url=http%3A%2F%2F127.0.0.1%3A1";
    let unsigned = app.call(Method::GET, path, None, None).await;
    let stale = app
        .signed_get_at(path, path, app.state.now().as_millis() / 1000 - 301)
        .await;
    let other_path = app
        .signed_get_at(
            path,
            "/v1/edge/changes?after=5",
            app.state.now().as_millis() / 1000,
        )
        .await;
    let forged = {
        let secret = sync::SyncSecret::new(vec![9; 32]).expect("secret");
        let header = sync::sign_now(
            &secret,
            app.state.now().as_millis() / 1000,
            &SignedRequest {
                method: "GET",
                path_and_query: path,
                body: &[],
            },
        )
        .expect("CSPRNG");
        app.send(
            Request::builder()
                .uri(path)
                .header(sync::SIGNATURE_HEADER, header)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    };
    let management_key_only = app.get(path).await;
    let with_header = |value: &'static str| {
        Request::builder()
            .uri(path)
            .header(sync::SIGNATURE_HEADER, value)
            .body(Body::empty())
            .expect("request")
    };
    let malformed = app.send(with_header("t=1,n=zz,v1=nothex")).await;
    let empty = app.send(with_header("")).await;
    let future = app
        .signed_get_at(path, path, app.state.now().as_millis() / 1000 + 301)
        .await;
    for reply in [
        &unsigned,
        &stale,
        &future,
        &other_path,
        &forged,
        &management_key_only,
        &malformed,
        &empty,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.code(), "invalid_signature");
        assert_eq!(
            reply.body["error"]["message"],
            unsigned.body["error"]["message"]
        );
    }
    assert!(
        app.store.edges().await.expect("edges").is_empty(),
        "a refused pull registered an edge"
    );
    let snapshot = app.call(Method::GET, "/v1/edge/snapshot", None, None).await;
    assert_eq!(snapshot.status, StatusCode::UNAUTHORIZED);
    assert_eq!(snapshot.code(), "invalid_signature");
    // A signature over the snapshot path does not open the changes path, nor the reverse.
    let crossed = app
        .signed_get_at(
            "/v1/edge/changes?after=0",
            "/v1/edge/snapshot",
            app.state.now().as_millis() / 1000,
        )
        .await;
    assert_eq!(crossed.code(), "invalid_signature");
    // The path and query are verified exactly as received, an empty query's `?` included.
    let (status, headers, _) = app.feed_bytes("/v1/edge/snapshot?").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-keyplane-seq"], "1", "the admin key's creation");
}

async fn changes_follow_every_mutation_in_order(app: TestApp) {
    let start = app.store.feed_head().await.expect("head");
    assert_eq!(start, 1, "the bootstrap's admin key is the first change");
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let updated = app
        .patch(
            &format!("/v1/keys/{id}"),
            json!({"scopes": ["contacts:read"]}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    let rotated = app.post(&format!("/v1/keys/{id}/rotate"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{rotated:?}");
    let successor = rotated.body["record"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let revoked = app
        .post(
            &format!("/v1/keys/{successor}/revoke"),
            json!({"reason": "unused"}),
        )
        .await;
    assert!(revoked.status.is_success(), "{revoked:?}");
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/v1/keys/{successor}"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert!(deleted.status.is_success(), "{deleted:?}");

    let head = app.store.feed_head().await.expect("head");
    assert_eq!(head, start + 6);
    let (status, headers, bytes) = app
        .feed_bytes(&format!("/v1/edge/changes?after={start}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-keyplane-head-seq"], head.to_string().as_str());
    let changes = decode_changes(&bytes).expect("decodes");
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (start + 1..=head).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    // (key, status, scopes) of each upsert; the removal's digest.
    let upsert = |n: usize| match &changes[n].op {
        ChangeOp::Upsert(entry) => (
            entry.key_id.to_string(),
            entry.status,
            entry.scopes.to_string(),
            entry.digest,
        ),
        other => panic!("change {n} should be an upsert, got {other:?}"),
    };
    let (key, status, _, _) = upsert(0);
    assert_eq!(
        (key.as_str(), status),
        (id.as_str(), KeyStatus::Active),
        "create"
    );
    let (key, status, scopes, _) = upsert(1);
    assert_eq!(
        (key.as_str(), status, scopes.as_str()),
        (id.as_str(), KeyStatus::Active, "contacts:read"),
        "update"
    );
    let (key, status, scopes, successor_digest) = upsert(2);
    assert_eq!(
        (key.as_str(), status, scopes.as_str()),
        (successor.as_str(), KeyStatus::Active, "contacts:read"),
        "rotation: the successor, same settings"
    );
    let (key, status, _, _) = upsert(3);
    assert_eq!(
        (key.as_str(), status),
        (id.as_str(), KeyStatus::Revoked),
        "rotation without grace: the old key revoked"
    );
    let (key, status, _, _) = upsert(4);
    assert_eq!(
        (key.as_str(), status),
        (successor.as_str(), KeyStatus::Revoked),
        "revoke"
    );
    match &changes[5].op {
        ChangeOp::Remove(digest) => assert_eq!(*digest, successor_digest, "delete"),
        other => panic!("delete should be a removal, got {other:?}"),
    }

    let (_, headers, page) = app.feed_bytes("/v1/edge/changes?after=1&limit=2").await;
    let page: Vec<u64> = decode_changes(&page)
        .expect("decodes")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(page, [2, 3]);
    assert_eq!(headers["x-keyplane-head-seq"], head.to_string().as_str());
    let (_, _, tail) = app
        .feed_bytes(&format!("/v1/edge/changes?after={}&limit=10000", head - 1))
        .await;
    assert_eq!(decode_changes(&tail).expect("decodes").len(), 1);
    let (status, _, empty) = app
        .feed_bytes(&format!("/v1/edge/changes?after={head}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(decode_changes(&empty).expect("decodes").is_empty());
    let ahead = app
        .signed_get(&format!("/v1/edge/changes?after={}", head + 1))
        .await;
    assert_eq!(
        (ahead.status, ahead.code()),
        (StatusCode::CONFLICT, "sequence_ahead")
    );
    for bad in [
        "limit=0",
        "limit=10001",
        "limit=x",
        "after=-1",
        "after=1&other=2",
    ] {
        let reply = app.signed_get(&format!("/v1/edge/changes?{bad}")).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
}

async fn the_snapshot_equals_the_replayed_log_and_pulling_registers_the_edge(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "test"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    app.post(&format!("/v1/keys/{id}/revoke"), json!({"reason": "other"}))
        .await;
    let head = app.store.feed_head().await.expect("head");

    let path = "/v1/edge/snapshot?edge=edge-a&url=http%3A%2F%2F127.0.0.1%3A8787";
    let (status, headers, bytes) = app.feed_bytes(path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-keyplane-seq"], head.to_string().as_str());
    let table = decode_snapshot(&bytes).expect("decodes");
    assert_eq!(table.applied_seq(), head);
    let mut replayed = keyplane_shared::KeyTable::new();
    replayed
        .apply_all(&app.store.changes_after(0, head).await.expect("log"))
        .expect("in order");
    assert_eq!(table.to_sorted_entries(), replayed.to_sorted_entries());
    let revoked = table
        .entries()
        .filter(|e| e.status() == KeyStatus::Revoked)
        .count();
    assert_eq!(
        revoked, 1,
        "the revoked key is in the table, marked revoked"
    );

    let edges = app.store.edges().await.expect("edges");
    assert_eq!(edges.len(), 1);
    assert_eq!(
        (edges[0].name.as_str(), edges[0].url.as_str()),
        ("edge-a", "http://127.0.0.1:8787")
    );
    assert_eq!(edges[0].reported_seq, head);
    let bad = app
        .signed_get("/v1/edge/changes?after=0&edge=a%20b&url=http%3A%2F%2Fx")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let half = app.signed_get("/v1/edge/changes?after=0&edge=a").await;
    assert_eq!(half.status, StatusCode::BAD_REQUEST);
}

async fn pulling_registers_and_updates_the_edge(app: TestApp) {
    let head = app.store.feed_head().await.expect("head");
    let pull = |after: u64, url: &str| {
        format!(
            "/v1/edge/changes?after={after}&edge=paris_1&url={}",
            url.replace(':', "%3A").replace('/', "%2F")
        )
    };
    // Refused pulls register nothing: a bad limit, a bad URL, a bad name, an edge ahead.
    for path in [
        format!("{}&limit=0", pull(0, "http://127.0.0.1:1")),
        pull(0, "ftp://127.0.0.1:1"),
        "/v1/edge/changes?after=0&edge=&url=http%3A%2F%2Fx".to_owned(),
        pull(head + 1, "http://127.0.0.1:1"),
    ] {
        let reply = app.signed_get(&path).await;
        assert!(reply.status.is_client_error(), "{path}: {reply:?}");
    }
    assert!(app.store.edges().await.expect("edges").is_empty());

    let first = app.signed_get(&pull(0, "http://127.0.0.1:8787")).await;
    assert_eq!(first.status, StatusCode::OK);
    let edges = app.store.edges().await.expect("edges");
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].name, "paris_1");
    assert_eq!(edges[0].url, "http://127.0.0.1:8787");
    assert_eq!(edges[0].reported_seq, 0);
    assert_eq!(edges[0].last_seen_at, Some(app.state.now()));

    // A later pull from another URL (another edge given the same name, or a replayed
    // registration) is served, but moves nothing: only the conflict is noted.
    app.create_key(json!({"name": "k", "environment": "live"}))
        .await;
    app.clock.advance_secs(60);
    let elsewhere = app
        .signed_get(&pull(head, "https://paris.example.com"))
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    let edges = app.store.edges().await.expect("edges");
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].url, "http://127.0.0.1:8787");
    assert_eq!(edges[0].reported_seq, 0, "not the other edge's sequence");
    assert_eq!(
        edges[0].conflict_url.as_deref(),
        Some("https://paris.example.com")
    );
    assert_eq!(edges[0].conflict_at, Some(app.state.now()));

    // The edge itself, pulling at another sequence: its row updated, the note cleared.
    app.clock.advance_secs(60);
    let second = app.signed_get(&pull(head, "http://127.0.0.1:8787")).await;
    assert_eq!(second.status, StatusCode::OK);
    let edges = app.store.edges().await.expect("edges");
    assert_eq!(edges[0].reported_seq, head);
    assert_eq!(edges[0].last_seen_at, Some(app.state.now()));
    assert_eq!(edges[0].conflict_url, None);

    // An operator re-registering it (as `keyplane edges add` does) keeps what it reported.
    app.store
        .register_edge(
            "paris_1",
            "https://paris2.example.com",
            None,
            app.state.now(),
        )
        .await
        .expect("register");
    let edges = app.store.edges().await.expect("edges");
    assert_eq!(edges[0].url, "https://paris2.example.com");
    assert_eq!(edges[0].reported_seq, head);
    assert!(edges[0].last_seen_at.is_some());
    assert!(app.store.remove_edge("paris_1").await.expect("remove"));
    assert!(!app.store.remove_edge("paris_1").await.expect("remove"));
}

/// What a fake edge saw and how it behaves.
#[derive(Default)]
struct FakeEdge {
    /// Each accepted push's sequence numbers.
    pushes: Vec<Vec<u64>>,
    /// Every change received, in order.
    received: Vec<keyplane_shared::Change>,
    /// Apply nothing, ever (acknowledge 0 to every push).
    never_apply: bool,
    /// Answer 500 to this many pushes first.
    fail_first: usize,
    /// Acknowledge 0 to the first successful push (a gap), once.
    ack_zero_once: bool,
    /// Highest sequence applied.
    applied: u64,
    /// Bad signatures seen.
    bad_signatures: usize,
    /// The path and query of every push received.
    paths: Vec<String>,
}

type Shared = Arc<(
    Mutex<FakeEdge>,
    sync::SyncSecret,
    keyplane_control_plane::state::AppState,
)>;

async fn fake_sync(
    State(shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let (edge, secret, state) = &*shared;
    let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
    let verified = sync::verify(
        secret,
        headers
            .get(sync::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok()),
        state.now().as_millis() / 1000,
        &SignedRequest {
            method: "POST",
            path_and_query,
            body: &body,
        },
    );
    let mut edge = edge.lock().expect("lock");
    edge.paths.push(path_and_query.to_owned());
    if verified.is_err() {
        edge.bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    if edge.fail_first > 0 {
        edge.fail_first -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    }
    let changes = decode_changes(&body).expect("the pusher sends valid batches");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/octet-stream")
    );
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    for seq in &seqs {
        if *seq == edge.applied + 1 && !edge.never_apply {
            edge.applied = *seq;
        }
    }
    edge.pushes.push(seqs);
    edge.received.extend(changes);
    let applied = if std::mem::take(&mut edge.ack_zero_once) {
        edge.applied = 0;
        0
    } else {
        edge.applied
    };
    (
        StatusCode::OK,
        json!({ "applied_seq": applied }).to_string(),
    )
}

async fn start_fake_edge(app: &TestApp, behaviour: FakeEdge) -> (String, Shared) {
    let shared: Shared = Arc::new((
        Mutex::new(behaviour),
        app.state.edge_secret.clone(),
        app.state.clone(),
    ));
    let router = axum::Router::new()
        .route("/__keyplane/sync", axum::routing::post(fake_sync))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, shared)
}

async fn the_pusher_delivers_signed_changes_retries_and_resends_after_a_gap(app: TestApp) {
    let (url, shared) = start_fake_edge(
        &app,
        FakeEdge {
            fail_first: 2,
            ack_zero_once: true,
            ..FakeEdge::default()
        },
    )
    .await;
    app.store
        .register_edge("fake", &url, None, app.state.now())
        .await
        .expect("register");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = pusher::spawn(app.state.clone(), stopped);

    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let head = app.store.feed_head().await.expect("head");
    until("the fake edge applying everything", || {
        std::future::ready(shared.0.lock().expect("lock").applied == head)
    })
    .await;
    {
        let edge = shared.0.lock().expect("lock");
        assert_eq!(edge.bad_signatures, 0);
        assert_eq!(edge.fail_first, 0, "the two failures were retried");
        assert!(edge.pushes.len() >= 2, "{:?}", edge.pushes);
        assert_eq!(
            edge.pushes[1].first(),
            Some(&1),
            "after acknowledging 0, everything is resent: {:?}",
            edge.pushes
        );
    }
    until_acked(&app, "fake", head).await;

    // A revoke reaches the edge as a push of that very change.
    let revoked = app
        .post(
            &format!("/v1/keys/{id}/revoke"),
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let head = app.store.feed_head().await.expect("head");
    until("the revoke pushed", || {
        std::future::ready(shared.0.lock().expect("lock").applied == head)
    })
    .await;
    {
        let edge = shared.0.lock().expect("lock");
        let last = edge.received.last().expect("a change");
        assert_eq!(last.seq, head);
        match &last.op {
            ChangeOp::Upsert(entry) => {
                assert_eq!(entry.key_id.to_string(), id);
                assert_eq!(entry.status, KeyStatus::Revoked);
            }
            other => panic!("a revoke is an upsert, got {other:?}"),
        }
        assert_eq!(
            edge.pushes.last().map(Vec::as_slice),
            Some(&[head][..]),
            "only the new change is sent"
        );
        assert_eq!(edge.bad_signatures, 0);
    }
    // Each push names its edge and where its changes start in the feed's lineage (all signed).
    let chain = app.store.chain_at(head - 1).await.expect("chain");
    let expected = format!(
        "/__keyplane/sync?edge=fake&history={}&after={}&chain={}",
        app.store.feed_history(),
        head - 1,
        chain.to_hex()
    );
    assert_eq!(shared.0.lock().expect("lock").paths.last(), Some(&expected));
    until_acked(&app, "fake", head).await;
    let edge = &app.store.edges().await.expect("edges")[0];
    assert_eq!(edge.last_error, None, "a success clears the last error");
    assert!(edge.last_push_at.is_some());
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().expect("text");
    assert!(
        text.contains("keyplane_edge_pushes_total{outcome=\"failed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("keyplane_edge_pushes_total{outcome=\"gap\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyplane_edge_lag_changes{edge=\"fake\"}"),
        "{text}"
    );
    task.abort();
}

/// Waits until the registry shows the edge acknowledged `seq`.
async fn until_acked(app: &TestApp, name: &str, seq: u64) {
    until(&format!("{name} acknowledging {seq}"), || async {
        let edges = app.store.edges().await.expect("edges");
        edges
            .iter()
            .any(|edge| edge.name == name && edge.acked_seq == seq)
    })
    .await;
}

async fn an_edge_that_applies_nothing_is_retried_with_backoff(app: TestApp) {
    let (url, shared) = start_fake_edge(
        &app,
        FakeEdge {
            never_apply: true,
            ..FakeEdge::default()
        },
    )
    .await;
    app.store
        .register_edge("broken", &url, None, app.state.now())
        .await
        .expect("register");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = pusher::spawn(app.state.clone(), stopped);
    until("the stall recorded", || async {
        app.store.edges().await.expect("edges")[0]
            .last_error
            .is_some()
    })
    .await;
    let last_error = app.store.edges().await.expect("edges")[0]
        .last_error
        .clone()
        .expect("the stall is recorded");
    assert!(last_error.contains("applies nothing"), "{last_error}");
    // One immediate resend, then backoff (100 ms, 200 ms, ...): not a tight loop. The sleep is a
    // measuring window (how many pushes in half a second), not a wait for a condition.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushes = shared.0.lock().expect("lock").pushes.len();
    assert!(
        (2..=8).contains(&pushes),
        "{pushes} pushes in about half a second"
    );
    task.abort();
}

async fn a_stuck_edge_blocks_neither_the_api_nor_other_edges(app: TestApp) {
    // An edge that accepts connections and never answers.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stuck_url = format!("http://{}", stuck.local_addr().expect("addr"));
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = stuck.accept().await {
            open.push(socket);
        }
    });
    let (url, shared) = start_fake_edge(&app, FakeEdge::default()).await;
    app.store
        .register_edge("stuck", &stuck_url, None, app.state.now())
        .await
        .expect("register");
    app.store
        .register_edge("healthy", &url, None, app.state.now())
        .await
        .expect("register");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = pusher::spawn(app.state.clone(), stopped);

    // The stuck edge has the admin key's change to receive: its push is in flight from now on.
    for n in 0..3 {
        let (created, record) = app
            .create_key(json!({"name": format!("k{n}"), "environment": "live"}))
            .await;
        assert!(!created.is_empty());
        let id = record["id"].as_str().expect("id");
        let revoked = app
            .post(
                &format!("/v1/keys/{id}/revoke"),
                json!({"reason": "unused"}),
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    }
    let head = app.store.feed_head().await.expect("head");
    until(
        "the healthy edge getting every change while the other hangs",
        || std::future::ready(shared.0.lock().expect("lock").applied == head),
    )
    .await;
    until_acked(&app, "healthy", head).await;
    let stuck = app
        .store
        .edges()
        .await
        .expect("edges")
        .into_iter()
        .find(|edge| edge.name == "stuck")
        .expect("registered");
    assert_eq!(stuck.acked_seq, 0, "the stuck edge acknowledged nothing");
    task.abort();
}

async fn serving_pushes_and_shutting_down_stops_the_pusher(mut app: TestApp) {
    let (url, shared) = start_fake_edge(&app, FakeEdge::default()).await;
    app.store
        .register_edge("served", &url, None, app.state.now())
        .await
        .expect("register");
    let application = app.application.take().expect("not yet serving");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    app.create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let head = app.store.feed_head().await.expect("head");
    until("`serve` pushing to the registered edge", || {
        std::future::ready(shared.0.lock().expect("lock").applied == head)
    })
    .await;
    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns promptly")
        .expect("task")
        .expect("served");
    // Stopped: a change made now is not pushed.
    let pushes = shared.0.lock().expect("lock").pushes.len();
    app.create_key(json!({"name": "after", "environment": "live"}))
        .await;
    // This sleep proves something does NOT happen (no push after shutdown): no condition to poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shared.0.lock().expect("lock").pushes.len(), pushes);
}
