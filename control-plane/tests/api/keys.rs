//! The key lifecycle: create, list, get, update, rotate, revoke, delete.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    a_created_key_is_shown_once_and_listed_truncated,
    listing_filters_and_pages_through_every_key_exactly_once,
    updates_change_the_key_in_place,
    rotation_without_grace_replaces_the_key_at_once,
    rotation_with_grace_keeps_the_old_key_until_the_grace_ends,
    grace_never_extends_the_old_keys_own_expiry,
    revoking_twice_is_harmless_and_says_so,
    revoked_keys_cannot_change_and_only_dead_keys_can_be_deleted,
    expiry_presets_set_the_expiry,
);

async fn a_created_key_is_shown_once_and_listed_truncated(app: TestApp) {
    let (key, record) = app
        .create_key(json!({
            "name": "CI deploy",
            "environment": "test",
            "scopes": ["contacts:read", "contacts:write"],
            "metadata": {"team": "platform"},
            "rate_limit": {"requests_per_minute": 600, "burst": 20},
        }))
        .await;
    assert!(
        key.starts_with("sk_test_") && key.len() == "sk_test_".len() + 38,
        "{key}"
    );
    let id = record["id"].as_str().expect("id");
    assert!(id.starts_with("key_"));
    let body = &key["sk_test_".len()..];
    assert_eq!(
        record["truncated_key"],
        format!("sk_test_{}...{}", &body[..6], &body[body.len() - 4..])
    );
    assert_eq!(record["status"], "active");
    assert_eq!(record["environment"], "test");
    assert_eq!(record["scopes"], json!(["contacts:read", "contacts:write"]));
    assert_eq!(
        record["rate_limit"],
        json!({"requests_per_minute": 600, "burst": 20})
    );
    assert_eq!(record["metadata"], json!({"team": "platform"}));
    assert_eq!(record["expires_at"], json!(null));
    assert!(
        record["created_by_key"]
            .as_str()
            .is_some_and(|by| by.starts_with("key_"))
    );
    // Made with a management key that nobody owns yet: no user made it, nobody owns it.
    assert_eq!(record["created_by"], json!(null));
    assert_eq!(record["owner"], json!(null));
    assert_eq!(record["exceeds_owner_scopes"], json!(false));

    let got = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, record);
    let listed = app.get("/v1/keys").await;
    let text = listed.body.to_string() + &got.body.to_string();
    assert!(
        !text.contains(&key),
        "the full key appears only in the create response"
    );
    assert!(
        listed.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|k| k["id"] == id)
    );
}

async fn listing_filters_and_pages_through_every_key_exactly_once(app: TestApp) {
    let mut ids = Vec::new();
    for (i, env) in ["live", "test", "live", "test", "live", "live", "test"]
        .iter()
        .enumerate()
    {
        app.clock.advance_secs(1);
        let name = if i == 3 {
            "100%_legacy".to_owned()
        } else {
            format!("service {i}")
        };
        let (_, record) = app
            .create_key(json!({"name": name, "environment": env}))
            .await;
        ids.push(record["id"].as_str().expect("id").to_owned());
    }
    let revoked = &ids[0];
    let reply = app
        .post(
            &format!("/v1/keys/{revoked}/revoke"),
            json!({"reason": "unused"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // Pages of 3 over 8 keys (7 + the admin key): newest first, each exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=3&cursor={c}"),
            None => "/v1/keys?limit=3".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        pages += 1;
        for key in page.body["data"].as_array().expect("data") {
            seen.push(key["id"].as_str().expect("id").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(&seen[..7], &newest_first[..], "stable order, newest first");

    let ids_of = |reply: crate::helpers::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|k| k["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let tests = ids_of(app.get("/v1/keys?environment=test").await);
    assert_eq!(tests, vec![ids[6].clone(), ids[3].clone(), ids[1].clone()]);
    assert_eq!(
        ids_of(app.get("/v1/keys?status=revoked").await),
        vec![revoked.clone()]
    );
    assert_eq!(ids_of(app.get("/v1/keys?status=active").await).len(), 7);
    // `%` and `_` in the filter match themselves, not any character.
    assert_eq!(
        ids_of(app.get("/v1/keys?name=0%25_").await),
        vec![ids[3].clone()]
    );
    assert_eq!(ids_of(app.get("/v1/keys?name=SERVICE").await).len(), 6);
}

async fn updates_change_the_key_in_place(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "old", "environment": "live", "scopes": ["a:read"]}))
        .await;
    let id = record["id"].as_str().expect("id");
    let reply = app
        .patch(
            &format!("/v1/keys/{id}"),
            json!({
                "name": "new",
                "scopes": ["a:read", "b:write"],
                "expires": "30d",
                "rate_limit": {"requests_per_minute": 10, "burst": 2},
                "metadata": {"v": 2},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["id"], id);
    assert_eq!(reply.body["name"], "new");
    assert_eq!(reply.body["scopes"], json!(["a:read", "b:write"]));
    assert_eq!(reply.body["expires_at"], "2027-02-14T08:00:00.000Z");
    assert_eq!(
        reply.body["rate_limit"],
        json!({"requests_per_minute": 10, "burst": 2})
    );
    assert_eq!(
        reply.body["truncated_key"], record["truncated_key"],
        "same secret"
    );

    let reset = app
        .patch(
            &format!("/v1/keys/{id}"),
            json!({"rate_limit": null, "expires": "never"}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{:?}", reset.body);
    assert_eq!(reset.body["rate_limit"], json!(null));
    assert_eq!(reset.body["expires_at"], json!(null));
    assert_eq!(reset.body["name"], "new", "absent fields are unchanged");

    let empty = app.patch(&format!("/v1/keys/{id}"), json!({})).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

async fn rotation_without_grace_replaces_the_key_at_once(app: TestApp) {
    let (old_key, record) = app
        .create_key(json!({"name": "rotating", "environment": "live", "scopes": ["api-keys:manage"], "metadata": {"k": "v"}}))
        .await;
    let id = record["id"].as_str().expect("id");
    let reply = app
        .call(
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let new_key = reply.body["key"].as_str().expect("new key");
    assert_ne!(new_key, old_key);
    let new = &reply.body["record"];
    assert_eq!(new["name"], "rotating");
    assert_eq!(new["scopes"], json!(["api-keys:manage"]));
    assert_eq!(new["metadata"], json!({"k": "v"}));
    assert_eq!(new["rotated_from"], id);
    assert_eq!(reply.body["previous"]["rotated_to"], new["id"]);
    assert_eq!(reply.body["previous"]["status"], "revoked");
    assert_eq!(reply.body["previous"]["revocation_reason"], "replaced");

    // The old key stops at once; the new one works.
    let with_old = app
        .call(Method::GET, "/v1/keys", Some(&old_key), None)
        .await;
    assert_eq!(with_old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(with_old.code(), "revoked_api_key");
    let with_new = app.call(Method::GET, "/v1/keys", Some(new_key), None).await;
    assert_eq!(with_new.status, StatusCode::OK);

    let again = app.post(&format!("/v1/keys/{id}/rotate"), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

async fn rotation_with_grace_keeps_the_old_key_until_the_grace_ends(app: TestApp) {
    let (old_key, record) = app
        .create_key(
            json!({"name": "graceful", "environment": "live", "scopes": ["api-keys:manage"]}),
        )
        .await;
    let id = record["id"].as_str().expect("id");
    let reply = app
        .post(
            &format!("/v1/keys/{id}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let new_key = reply.body["key"].as_str().expect("new key").to_owned();
    assert_eq!(reply.body["previous"]["status"], "active");
    assert_eq!(
        reply.body["previous"]["expires_at"],
        "2027-01-15T09:00:00.000Z"
    );

    for key in [&old_key, &new_key] {
        let reply = app.call(Method::GET, "/v1/keys", Some(key), None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "both keys work during the grace period"
        );
    }
    app.clock.advance_secs(3600);
    let old = app
        .call(Method::GET, "/v1/keys", Some(&old_key), None)
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.code(), "expired_api_key");
    let new = app
        .call(Method::GET, "/v1/keys", Some(&new_key), None)
        .await;
    assert_eq!(new.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.body["status"],
        "expired"
    );

    let too_long = app
        .post(
            &format!(
                "/v1/keys/{}/rotate",
                reply.body["record"]["id"].as_str().expect("id")
            ),
            json!({"grace_seconds": 2_592_001}),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
}

async fn grace_never_extends_the_old_keys_own_expiry(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "short-lived", "environment": "live", "expires": "1h"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let reply = app
        .post(
            &format!("/v1/keys/{id}/rotate"),
            json!({"grace_seconds": 86_400}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["previous"]["expires_at"], record["expires_at"]);
    assert_eq!(
        reply.body["record"]["expires_at"], record["expires_at"],
        "successor keeps the expiry"
    );
}

async fn revoking_twice_is_harmless_and_says_so(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "leaked", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let first = app
        .post(
            &format!("/v1/keys/{id}/revoke"),
            json!({"reason": "compromised", "note": "found in a public gist"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["already_revoked"], false);
    assert_eq!(first.body["record"]["status"], "revoked");
    assert_eq!(first.body["record"]["revocation_reason"], "compromised");
    assert_eq!(
        first.body["record"]["revocation_note"],
        "found in a public gist"
    );

    let second = app
        .post(&format!("/v1/keys/{id}/revoke"), json!({"reason": "other"}))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["already_revoked"], true);
    assert_eq!(
        second.body["record"]["revocation_reason"], "compromised",
        "unchanged"
    );
    assert_eq!(
        second.body["record"]["revoked_at"],
        first.body["record"]["revoked_at"]
    );
}

async fn revoked_keys_cannot_change_and_only_dead_keys_can_be_deleted(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "doomed", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let path = format!("/v1/keys/{id}");
    let active = app
        .call(Method::DELETE, &path, Some(&app.admin_key), None)
        .await;
    assert_eq!(
        active.status,
        StatusCode::CONFLICT,
        "an active key cannot be deleted"
    );

    app.post(
        &format!("{path}/revoke"),
        json!({"reason": "project_ended"}),
    )
    .await;
    assert_eq!(
        app.patch(&path, json!({"name": "x"})).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&format!("{path}/rotate"), json!({})).await.status,
        StatusCode::CONFLICT
    );

    let deleted = app
        .call(Method::DELETE, &path, Some(&app.admin_key), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    let listed = app.get("/v1/keys").await;
    assert!(!listed.body.to_string().contains(id));
    let trail = app.get(&format!("/v1/audit?key_id={id}")).await;
    let actions: Vec<&str> = trail.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["key_deleted", "key_revoked", "key_created"],
        "the trail stays"
    );
}

async fn expiry_presets_set_the_expiry(app: TestApp) {
    // T0 is 2027-01-15T08:00:00Z.
    for (preset, expected) in [
        ("1h", json!("2027-01-15T09:00:00.000Z")),
        ("7d", json!("2027-01-22T08:00:00.000Z")),
        ("90d", json!("2027-04-15T08:00:00.000Z")),
        ("1y", json!("2028-01-15T08:00:00.000Z")),
        ("never", json!(null)),
        ("2030-06-01T12:00:00Z", json!("2030-06-01T12:00:00.000Z")),
    ] {
        let (_, record) = app
            .create_key(json!({"name": preset, "environment": "live", "expires": preset}))
            .await;
        assert_eq!(record["expires_at"], expected, "{preset}");
    }
    let past = app
        .post(
            "/v1/keys",
            json!({"name": "x", "environment": "live", "expires": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
}
