//! The feed's answers as an attacker between an edge and the control plane would meet them:
//! signed for the one request they answer, naming the feed's history and chain; and the
//! lineage itself (a history per database, a chain over the whole log, kept over restarts and
//! made once for a database from before lineages).

use axum::http::StatusCode;
use keyplane_control_plane::store::Store as _;
use keyplane_shared::sync;
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{FeedChain, HistoryId};
use serde_json::json;

use crate::backends;
use crate::helpers::{FeedAnswer, TestApp};

backends!(
    a_page_of_changes_is_signed_for_its_request_and_names_the_chain_where_it_starts,
    a_sequence_ahead_refusal_is_signed_too,
    the_snapshot_names_the_chain_at_its_sequence,
    the_history_outlives_a_restart_and_a_database_from_before_lineages_gets_one_chain,
);

async fn feed(app: &TestApp, path: &str) -> FeedAnswer {
    app.signed_feed(path).await
}

/// The feed's chain at `seq`, recomputed from the log the feed serves.
async fn chain_from_the_log(app: &TestApp, seq: u64) -> FeedChain {
    let changes = app.store.changes_after(0, seq).await.expect("changes");
    assert_eq!(changes.len() as u64, seq);
    FeedChain::genesis(app.store.feed_history()).extend(&changes)
}

async fn make_changes(app: &TestApp, count: usize) {
    for n in 0..count {
        app.create_key(json!({"name": format!("k{n}"), "environment": "live"}))
            .await;
    }
}

async fn a_page_of_changes_is_signed_for_its_request_and_names_the_chain_where_it_starts(
    app: TestApp,
) {
    make_changes(&app, 3).await;
    let head = app.store.feed_head().await.expect("head");
    let answer = feed(&app, "/v1/edge/changes?after=2").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.verify_for(&app, &answer.nonce), Ok(()));
    assert_eq!(
        answer.header(sync::HISTORY_HEADER),
        app.store.feed_history().to_string()
    );
    assert_eq!(answer.header(sync::HEAD_SEQ_HEADER), head.to_string());
    assert_eq!(
        answer.header(sync::CHAIN_HEADER),
        chain_from_the_log(&app, 2).await.to_hex()
    );
    assert_eq!(
        decode_changes(&answer.body).expect("a batch").len() as u64,
        head - 2
    );

    // Recorded and replayed to another pull (another nonce), the answer does not verify; nor
    // does it with a byte of its body, its status or a signed header changed.
    let other = feed(&app, "/v1/edge/changes?after=2").await;
    assert_eq!(
        answer.verify_for(&app, &other.nonce),
        Err(sync::SyncAuthError::BadSignature)
    );
    let mut tampered = answer;
    if let Some(last) = tampered.body.last_mut() {
        *last ^= 1;
    }
    assert_eq!(
        tampered.verify_for(&app, &tampered.nonce),
        Err(sync::SyncAuthError::BadSignature)
    );
    let mut moved = feed(&app, "/v1/edge/changes?after=2").await;
    moved
        .headers
        .insert(sync::HEAD_SEQ_HEADER, (head + 5).into());
    assert_eq!(
        moved.verify_for(&app, &moved.nonce),
        Err(sync::SyncAuthError::BadSignature)
    );
    let mut unsigned = feed(&app, "/v1/edge/changes?after=0").await;
    unsigned.headers.remove(sync::RESPONSE_SIGNATURE_HEADER);
    assert_eq!(
        unsigned.verify_for(&app, &unsigned.nonce),
        Err(sync::SyncAuthError::Missing)
    );
}

async fn a_sequence_ahead_refusal_is_signed_too(app: TestApp) {
    make_changes(&app, 1).await;
    let head = app.store.feed_head().await.expect("head");
    let answer = feed(&app, &format!("/v1/edge/changes?after={}", head + 10)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.verify_for(&app, &answer.nonce), Ok(()));
    assert_eq!(answer.header(sync::HEAD_SEQ_HEADER), head.to_string());
    // A 409 forged by someone without the edge secret (or a 200 turned into one) fails.
    let mut forged = feed(&app, "/v1/edge/changes?after=0").await;
    forged.status = StatusCode::CONFLICT;
    assert_eq!(
        forged.verify_for(&app, &forged.nonce),
        Err(sync::SyncAuthError::BadSignature)
    );
}

async fn the_snapshot_names_the_chain_at_its_sequence(app: TestApp) {
    make_changes(&app, 2).await;
    let head = app.store.feed_head().await.expect("head");
    let answer = feed(&app, "/v1/edge/snapshot").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.verify_for(&app, &answer.nonce), Ok(()));
    assert_eq!(answer.header(sync::SNAPSHOT_SEQ_HEADER), head.to_string());
    assert_eq!(
        answer.header(sync::CHAIN_HEADER),
        chain_from_the_log(&app, head).await.to_hex()
    );
    assert_eq!(
        app.store.chain_at(head).await.expect("chain"),
        chain_from_the_log(&app, head).await
    );
    assert!(matches!(
        app.store.chain_at(head + 1).await,
        Err(keyplane_control_plane::store::StoreError::NotFound)
    ));
}

async fn the_history_outlives_a_restart_and_a_database_from_before_lineages_gets_one_chain(
    app: TestApp,
) {
    make_changes(&app, 3).await;
    let head = app.store.feed_head().await.expect("head");
    let history = app.store.feed_history();
    let sealer = app.state.sealer.clone();
    let reopened =
        keyplane_control_plane::store::sql::SqlStore::connect(&app.database_url, sealer.clone())
            .await
            .expect("reopens");
    assert_eq!(
        reopened.feed_history(),
        history,
        "the same database, the same history"
    );
    assert_eq!(
        reopened.chain_at(head).await.expect("chain"),
        chain_from_the_log(&app, head).await
    );

    // A database as it was before lineages: no history, no chains.
    for statement in [
        "UPDATE feed SET history_id = NULL, chain = NULL",
        "UPDATE changes SET chain = NULL",
    ] {
        sqlx::query(statement)
            .execute(app.pool())
            .await
            .expect("clears");
    }
    let upgraded = keyplane_control_plane::store::sql::SqlStore::connect(&app.database_url, sealer)
        .await
        .expect("reopens");
    let new_history: HistoryId = upgraded.feed_history();
    assert_ne!(new_history, history, "a history is made for it");
    let changes = upgraded.changes_after(0, head).await.expect("changes");
    let expected = FeedChain::genesis(new_history).extend(&changes);
    assert_eq!(upgraded.chain_at(head).await.expect("chain"), expected);
    // Later changes continue that chain.
    app.create_key(json!({"name": "after", "environment": "live"}))
        .await;
    let later = upgraded.changes_after(head, 10).await.expect("changes");
    assert_eq!(
        upgraded
            .chain_at(head + later.len() as u64)
            .await
            .expect("chain"),
        expected.extend(&later)
    );
}
