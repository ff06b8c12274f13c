//! Replication, control-plane side: the pusher against fake edges (axum servers on 127.0.0.1
//! that verify and record what they receive).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keyplane_control_plane::replication::pusher;
use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{ChangeOp, KeyStatus};
use serde_json::json;

use crate::backends;
use crate::helpers::{TestApp, until};

backends!(
    the_pusher_delivers_signed_changes_retries_and_resends_after_a_gap,
    an_edge_that_applies_nothing_is_retried_with_backoff,
    a_stuck_edge_blocks_neither_the_api_nor_other_edges,
    serving_pushes_and_shutting_down_stops_the_pusher,
    changes_of_keys_with_many_long_scopes_are_pushed_in_bodies_under_the_bound,
);

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
    /// The body length of every push received.
    body_lengths: Vec<usize>,
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
    edge.body_lengths.push(body.len());
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

/// Registers the fake edge at `url` as `name`.
async fn register(app: &TestApp, name: &str, url: &str) {
    app.store
        .register_edge(name, url, None, app.state.now())
        .await
        .expect("register");
}

/// Starts the pusher; it runs until the returned task is aborted (or the sender, which the
/// caller keeps, says stop).
fn start_pusher(
    app: &TestApp,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    (stop, pusher::spawn(app.state.clone(), stopped))
}

/// Waits until the fake edge has applied every change up to `seq`.
async fn until_applied(shared: &Shared, seq: u64, what: &str) {
    until(what, || {
        std::future::ready(shared.0.lock().expect("lock").applied == seq)
    })
    .await;
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
    register(&app, "fake", &url).await;
    let (_stop, task) = start_pusher(&app);

    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let head = app.store.feed_head().await.expect("head");
    until_applied(&shared, head, "the fake edge applying everything").await;
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
    until_applied(&shared, head, "the revoke pushed").await;
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

async fn changes_of_keys_with_many_long_scopes_are_pushed_in_bodies_under_the_bound(app: TestApp) {
    // 150 changes (well under the 1,000 a push holds) of about 1.2 MiB.
    app.create_keys_with_the_most_scopes(150).await;
    let head = app.store.feed_head().await.expect("head");
    // Registered after the keys, so the whole backlog is one push's worth of changes.
    let (url, shared) = start_fake_edge(&app, FakeEdge::default()).await;
    register(&app, "fake", &url).await;
    let (_stop, task) = start_pusher(&app);
    until_applied(&shared, head, "the fake edge applying everything").await;
    {
        let edge = shared.0.lock().expect("lock");
        assert!(
            edge.pushes.len() >= 2,
            "one push for all: {:?}",
            edge.body_lengths
        );
        assert!(
            edge.body_lengths
                .iter()
                .all(|&length| length <= sync::MAX_CHANGES_BYTES),
            "a push body over {} bytes: {:?}",
            sync::MAX_CHANGES_BYTES,
            edge.body_lengths
        );
        let received: Vec<u64> = edge.received.iter().map(|change| change.seq).collect();
        assert_eq!(
            received,
            (1..=head).collect::<Vec<_>>(),
            "every change, once, in order"
        );
    }
    until_acked(&app, "fake", head).await;
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
    register(&app, "broken", &url).await;
    let (_stop, task) = start_pusher(&app);
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
    register(&app, "stuck", &stuck_url).await;
    register(&app, "healthy", &url).await;
    let (_stop, task) = start_pusher(&app);

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
    until_applied(
        &shared,
        head,
        "the healthy edge getting every change while the other hangs",
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
    register(&app, "served", &url).await;
    let application = app.application.take().expect("not yet serving");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.serve(async {
        let _ = stopped.await;
    }));
    app.create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let head = app.store.feed_head().await.expect("head");
    until_applied(&shared, head, "`serve` pushing to the registered edge").await;
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
