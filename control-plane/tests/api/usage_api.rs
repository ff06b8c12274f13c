//! Usage reading: the per-key usage API and daily counts, the listing's last-use filters, and
//! retention.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use keyplane_shared::Timestamp;
use serde_json::json;

use crate::backends;
use crate::helpers::usage::{DAY, HOUR, MINUTE, event, ids, request_id};
use crate::helpers::{T0, TestApp, until};

backends!(
    the_usage_api_filters_by_time_status_and_ip,
    usage_pages_cover_every_event_once_in_order,
    another_organizations_key_usage_answers_404,
    daily_counts_split_at_utc_midnight,
    listing_filters_find_unused_keys_and_keys_used_from_an_address,
    retention_deletes_only_events_older_than_the_cutoff,
    serving_runs_the_retention_cleanup_and_stops_it_on_shutdown,
);

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
    until("the old event deleted and counted", || async {
        app.stored_events().await == 1
            && app.metric("keyplane_usage_events_expired_total").await == Some(1.0)
    })
    .await;
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
