//! The commit wakes the pusher: a change written through the store alone (as the CLI, another
//! task or a background job would, with no HTTP request) reaches a registered edge without
//! waiting for the pusher's tick. The pusher runs here with an hour-long tick, so only the
//! store's announcement of the new feed head can have sent it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use keyplane_control_plane::replication::pusher;
use keyplane_control_plane::store::{AuditContext, Reach, Revocation, RevocationReason};
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{ApiKey, ChangeOp, KeyStatus};
use serde_json::json;

use crate::backends;
use crate::helpers::{TestApp, until};

backends!(a_change_written_through_the_store_alone_is_pushed_without_the_tick);

/// What the recording edge received: every change, in order.
type Received = Arc<Mutex<Vec<keyplane_shared::Change>>>;

/// An edge that applies every push and acknowledges its last sequence (signatures are the
/// replication tests' concern).
async fn record(State(received): State<Received>, body: Bytes) -> String {
    let changes = decode_changes(&body).expect("the pusher sends valid batches");
    let mut received = received.lock().expect("lock");
    received.extend(changes);
    let applied = received.last().map_or(0, |change| change.seq);
    json!({ "applied_seq": applied }).to_string()
}

async fn start_recording_edge() -> (String, Received) {
    let received = Received::default();
    let router = axum::Router::new()
        .route("/__keyplane/sync", axum::routing::post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

/// Waits until the edge has received sequence `seq` (the tick is an hour: only the store's
/// announcement can have sent it).
async fn until_received(received: &Received, seq: u64) {
    until(&format!("sequence {seq} pushed"), || async {
        received
            .lock()
            .expect("lock")
            .last()
            .is_some_and(|change| change.seq >= seq)
    })
    .await;
}

async fn a_change_written_through_the_store_alone_is_pushed_without_the_tick(app: TestApp) {
    let (url, received) = start_recording_edge().await;
    app.store
        .register_edge("wakeup", &url, None, app.state.now())
        .await
        .expect("register");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = pusher::spawn_with_tick(app.state.clone(), stopped, Duration::from_secs(3600));
    // The pusher's first round sends what the edge lacks.
    let head = app.store.feed_head().await.expect("head");
    until_received(&received, head).await;

    // The admin key, revoked through the store: no HTTP request, no middleware.
    let admin = ApiKey::parse(&app.admin_key, &app.state.prefix).expect("admin key");
    let digest = app.state.peppers.current().digest(&admin);
    let record = app
        .store
        .key_by_digest(&digest)
        .await
        .expect("lookup")
        .expect("the admin key");
    let context = AuditContext {
        reach: Reach::within(&record.scopes),
        user_agent: Some("push wake-up test".into()),
        request_id: "req_wakeup".into(),
        ..AuditContext::default()
    };
    let revocation = Revocation {
        reason: RevocationReason::Compromised,
        note: None,
    };
    app.store
        .revoke_key(
            record.org_id,
            record.id,
            revocation,
            &context,
            app.state.now(),
        )
        .await
        .expect("revoked");
    let head = app.store.feed_head().await.expect("head");
    until_received(&received, head).await;
    let last = received
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a change");
    match last.op {
        ChangeOp::Upsert(entry) => {
            assert_eq!(entry.key_id, record.id);
            assert_eq!(entry.status, KeyStatus::Revoked);
        }
        other => panic!("a revocation is an upsert, got {other:?}"),
    }
    task.abort();
}
