//! Replication, control-plane side: the signed feed edges pull (refusals, changes in order,
//! snapshots) and the edge registry it keeps.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::{decode_changes, decode_snapshot};
use keyplane_shared::{ChangeOp, KeyStatus};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    the_feed_refuses_unsigned_forged_and_stale_requests,
    changes_follow_every_mutation_in_order,
    the_snapshot_equals_the_replayed_log_and_pulling_registers_the_edge,
    pulling_registers_and_updates_the_edge,
    a_page_of_large_changes_is_bounded_by_its_bytes,
);

async fn a_page_of_large_changes_is_bounded_by_its_bytes(app: TestApp) {
    // About 1.2 MiB of changes, well under the 10,000 a page may hold.
    app.create_keys_with_the_most_scopes(150).await;
    let head = app.store.feed_head().await.expect("head");
    let mut after = 0;
    let mut pages = Vec::new();
    while after < head {
        let (status, headers, body) = app
            .feed_bytes(&format!("/v1/edge/changes?after={after}&limit=10000"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-keyplane-head-seq"], head.to_string().as_str());
        assert!(
            body.len() <= sync::MAX_CHANGES_BYTES,
            "a page of {} bytes after {after}",
            body.len()
        );
        let seqs: Vec<u64> = decode_changes(&body)
            .expect("decodes")
            .iter()
            .map(|change| change.seq)
            .collect();
        assert_eq!(
            seqs,
            (after + 1..=after + seqs.len() as u64).collect::<Vec<_>>(),
            "a page goes on from where the last ended"
        );
        after = *seqs.last().expect("a page before the head is never empty");
        pages.push(seqs.len());
    }
    assert!(pages.len() >= 2, "one page for all: {pages:?}");
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
    assert_eq!(table.to_sorted_rows(), replayed.to_sorted_rows());
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
    // Operators read the same through the API, times in RFC 3339 as everywhere in it.
    let listed = app.get("/v1/operator/edges").await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let edge = &listed.body["data"][0];
    assert_eq!(edge["name"], "paris_1");
    assert_eq!(edge["conflict_url"], "https://paris.example.com");
    assert_eq!(edge["conflict_at"], "2027-01-15T08:01:00.000Z");
    assert_eq!(edge["last_seen_at"], "2027-01-15T08:00:00.000Z");
    assert_eq!(edge["last_push_at"], serde_json::Value::Null);

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
