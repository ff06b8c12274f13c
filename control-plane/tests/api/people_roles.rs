//! Roles and ownership: what each role may and may not do (table-driven), the scope ceiling on
//! create / update / rotate, removing a member with their keys, and host-product tokens.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::people::{Browser, PASSWORD, Team};

backends!(
    each_role_is_allowed_and_refused_what_the_table_says,
    a_member_cannot_make_or_widen_a_key_beyond_their_role,
    removing_a_member_revokes_their_keys_or_transfers_them,
    the_last_owner_stays_and_admins_cannot_touch_owners,
    an_invitation_whose_role_was_deleted_since_is_refused_on_acceptance,
    a_key_in_a_rotation_grace_period_is_reconciled_with_its_successor,
);

fn key_body(name: &str, scopes: &[&str]) -> Option<Value> {
    Some(json!({"name": name, "environment": "test", "scopes": scopes}))
}

/// The owner makes a `support` role (`tickets:*`) and adds Sue to it.
async fn support_member(app: &TestApp, team: &Team) -> Browser {
    let role = app
        .as_browser(
            &team.owner,
            Method::POST,
            "/v1/roles",
            Some(json!({"name": "support", "scopes": ["tickets:*"]})),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{:?}", role.body);
    app.member(&team.owner, "sue@example.com", "Sue", "support")
        .await
}

/// `POST /v1/keys/reconcile` by the owner.
async fn reconcile(app: &TestApp, team: &Team, body: Value) -> crate::helpers::Reply {
    app.as_browser(&team.owner, Method::POST, "/v1/keys/reconcile", Some(body))
        .await
}

/// The owner shrinks the `support` role to `tickets:list`.
async fn shrink_support(app: &TestApp, team: &Team) {
    let shrunk = app
        .as_browser(
            &team.owner,
            Method::PUT,
            "/v1/roles/support",
            Some(json!({"scopes": ["tickets:list"]})),
        )
        .await;
    assert_eq!(shrunk.status, StatusCode::OK, "{:?}", shrunk.body);
}

async fn create(app: &TestApp, who: &Browser, name: &str, scopes: &[&str]) -> (StatusCode, Value) {
    let reply = app
        .as_browser(who, Method::POST, "/v1/keys", key_body(name, scopes))
        .await;
    (reply.status, reply.body)
}

async fn each_role_is_allowed_and_refused_what_the_table_says(app: TestApp) {
    let team = app.team().await;
    let (_, owners) = create(&app, &team.owner, "owner's", &["billing:read"]).await;
    let owners_key = owners["record"]["id"].as_str().expect("id").to_owned();
    let (_, devs) = create(&app, &team.developer, "dev's", &["billing:read"]).await;
    let devs_key = devs["record"]["id"].as_str().expect("id").to_owned();
    assert_eq!(devs["record"]["owner"]["display_name"], "Dan Dev");
    let rename = |name: &str| Some(json!({"name": name}));
    let people = [
        ("owner", &team.owner),
        ("admin", &team.admin),
        ("developer", &team.developer),
        ("viewer", &team.viewer),
    ];
    // (call, expected status per role: owner, admin, developer, viewer)
    let table: Vec<(Method, String, Option<Value>, [StatusCode; 4])> = {
        use StatusCode as S;
        vec![
            (
                Method::GET,
                "/v1/keys".into(),
                None,
                [S::OK, S::OK, S::OK, S::OK],
            ),
            (
                Method::GET,
                "/v1/audit".into(),
                None,
                [S::OK, S::OK, S::OK, S::OK],
            ),
            (
                Method::GET,
                "/v1/members".into(),
                None,
                [S::OK, S::OK, S::OK, S::OK],
            ),
            (
                Method::GET,
                "/v1/roles".into(),
                None,
                [S::OK, S::OK, S::OK, S::OK],
            ),
            (
                Method::POST,
                "/v1/keys".into(),
                key_body("k", &["billing:read"]),
                [S::CREATED, S::CREATED, S::CREATED, S::FORBIDDEN],
            ),
            (
                Method::PATCH,
                format!("/v1/keys/{devs_key}"),
                rename("d2"),
                [S::OK, S::OK, S::OK, S::FORBIDDEN],
            ),
            (
                Method::PATCH,
                format!("/v1/keys/{owners_key}"),
                rename("o2"),
                [S::OK, S::OK, S::FORBIDDEN, S::FORBIDDEN],
            ),
            (
                Method::POST,
                "/v1/invitations".into(),
                Some(json!({"email": "new@example.com", "role": "viewer"})),
                [S::CREATED, S::CREATED, S::FORBIDDEN, S::FORBIDDEN],
            ),
            (
                Method::POST,
                "/v1/roles".into(),
                Some(json!({"name": "support", "scopes": ["tickets:read"]})),
                [S::CREATED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN],
            ),
            (
                Method::POST,
                "/v1/keys/reconcile".into(),
                Some(json!({"action": "narrow"})),
                [S::OK, S::OK, S::FORBIDDEN, S::FORBIDDEN],
            ),
        ]
    };
    for (method, path, body, expected) in table {
        for ((role, who), status) in people.iter().zip(expected) {
            let reply = app
                .as_browser(who, method.clone(), &path, body.clone())
                .await;
            assert_eq!(
                reply.status, status,
                "{role}: {method} {path}: {:?}",
                reply.body
            );
            if status == StatusCode::FORBIDDEN {
                assert!(
                    ["forbidden", "not_key_owner"].contains(&reply.code()),
                    "{role}: {method} {path}: {}",
                    reply.code()
                );
            }
        }
    }
    // The owner filter: one person's keys, `me` for the caller's own.
    let mine = app
        .as_browser(&team.developer, Method::GET, "/v1/keys?owner=me", None)
        .await;
    let names: Vec<&str> = mine.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|key| key["owner"]["id"].as_str())
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|owner| *owner == team.developer.user_id));
    let owners = app
        .as_browser(
            &team.viewer,
            Method::GET,
            &format!("/v1/keys?owner={}", team.owner.user_id),
            None,
        )
        .await;
    let ids: Vec<&str> = owners.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|key| key["id"].as_str())
        .collect();
    assert!(ids.contains(&owners_key.as_str()));
    assert!(!ids.contains(&devs_key.as_str()));
    let bad = app
        .as_browser(&team.viewer, Method::GET, "/v1/keys?owner=someone", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // A developer may revoke their own key, not the owner's.
    let theirs = app
        .as_browser(
            &team.developer,
            Method::POST,
            &format!("/v1/keys/{owners_key}/revoke"),
            Some(json!({"reason": "unused"})),
        )
        .await;
    assert_eq!(theirs.code(), "not_key_owner");
    let own = app
        .as_browser(
            &team.developer,
            Method::POST,
            &format!("/v1/keys/{devs_key}/revoke"),
            Some(json!({"reason": "unused"})),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    // Another organization's member id is not found (no cross-organization probing).
    let stranger = app
        .as_browser(
            &team.owner,
            Method::PATCH,
            "/v1/members/usr_0000000000000000000000",
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
}

async fn a_member_cannot_make_or_widen_a_key_beyond_their_role(app: TestApp) {
    let team = app.team().await;
    for scopes in [&["admin:full"][..], &["api-keys:manage"], &["api-keys:*"]] {
        let (status, body) = create(&app, &team.developer, "too much", scopes).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{scopes:?}");
        assert_eq!(body["error"]["code"], "insufficient_scope");
    }
    // A custom role's scopes are its members' ceiling, on create and on update.
    let support = support_member(&app, &team).await;
    let (status, _) = create(&app, &support, "billing", &["billing:read"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, made) = create(&app, &support, "tickets", &["tickets:read"]).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = made["record"]["id"].as_str().expect("id").to_owned();
    let widen = app
        .as_browser(
            &support,
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"scopes": ["tickets:read", "billing:read"]})),
        )
        .await;
    assert_eq!(widen.code(), "insufficient_scope");
    // The owner shrinks the role: the key keeps working but is reported, then narrowed.
    shrink_support(&app, &team).await;
    let key = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(key.body["exceeds_owner_scopes"], true);
    assert_eq!(key.body["status"], "active");
    // Rotation copies the scopes: the member cannot rotate a key above their ceiling.
    let rotate = app
        .as_browser(
            &support,
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(rotate.code(), "insufficient_scope");
    let narrowed = reconcile(&app, &team, json!({"action": "narrow"})).await;
    assert_eq!(narrowed.status, StatusCode::OK);
    assert_eq!(narrowed.body["data"][0]["scopes"], json!([]));
    assert_eq!(narrowed.body["data"][0]["exceeds_owner_scopes"], false);
    // A role members hold cannot be deleted.
    let delete = app
        .as_browser(&team.owner, Method::DELETE, "/v1/roles/support", None)
        .await;
    assert_eq!(delete.code(), "role_in_use");
}

async fn an_invitation_whose_role_was_deleted_since_is_refused_on_acceptance(app: TestApp) {
    let owner = app.first_owner().await;
    let made = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/roles",
            Some(json!({"name": "auditor", "scopes": ["billing:read"]})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let invited = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/invitations",
            Some(json!({"email": "aud@example.com", "role": "auditor"})),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let link = invited.body["link"].as_str().expect("link").to_owned();
    // Nobody holds the role yet: it can go.
    let deleted = app
        .as_browser(&owner, Method::DELETE, "/v1/roles/auditor", None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let accepted = app
        .try_accept(&link, "aud@example.com", "Aud", PASSWORD)
        .await;
    assert_eq!(
        (accepted.status, accepted.code()),
        (StatusCode::CONFLICT, "invitation_role_deleted"),
        "{:?}",
        accepted.body
    );
    let members = app
        .as_browser(&owner, Method::GET, "/v1/members", None)
        .await;
    assert!(
        !members.body.to_string().contains("aud@example.com"),
        "no member made: {:?}",
        members.body
    );
    // Inviting to a role that does not exist is a 404, not a database failure.
    let unknown = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/invitations",
            Some(json!({"email": "x@example.com", "role": "auditor"})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

async fn removing_a_member_revokes_their_keys_or_transfers_them(app: TestApp) {
    let team = app.team().await;
    let mut devs_keys = Vec::new();
    for name in ["dev one", "dev two"] {
        let (_, made) = create(&app, &team.developer, name, &["billing:read"]).await;
        devs_keys.push(made["record"]["id"].as_str().expect("id").to_owned());
    }
    let (_, admins) = create(&app, &team.admin, "admin's", &["billing:read"]).await;
    let admins_key = admins["record"]["id"].as_str().expect("id").to_owned();
    let feed_before = app.store.feed_head().await.expect("head");
    // The decision about the keys is required.
    let undecided = app
        .as_browser(
            &team.admin,
            Method::POST,
            &format!("/v1/members/{}/remove", team.developer.user_id),
            Some(json!({})),
        )
        .await;
    assert_eq!(undecided.status, StatusCode::BAD_REQUEST);
    let removed = app
        .as_browser(
            &team.admin,
            Method::POST,
            &format!("/v1/members/{}/remove", team.developer.user_id),
            Some(json!({"keys": "revoke"})),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    assert_eq!(removed.body["revoked"].as_array().map(Vec::len), Some(2));
    for id in &devs_keys {
        let key = app.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(key.body["status"], "revoked");
        assert_eq!(key.body["revocation_reason"], "employee_departure");
    }
    // Replicated like any revoke: one change per key for the edges; one audit record each.
    assert_eq!(app.store.feed_head().await.expect("head"), feed_before + 2);
    let audit = app.audit().await;
    let revokes = audit
        .iter()
        .filter(|r| r["action"] == "key_revoked")
        .count();
    assert_eq!(revokes, 2);
    let removal = audit
        .iter()
        .find(|r| r["action"] == "member_removed")
        .expect("audited");
    assert_eq!(removal["target_user_id"], team.developer.user_id.as_str());
    assert_eq!(removal["actor_user_id"], team.admin.user_id.as_str());
    // Their session is over.
    assert_eq!(
        app.as_browser(&team.developer, Method::GET, "/v1/keys", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Transfer instead: the admin leaves, their key goes to the owner and keeps working.
    let moved = app
        .as_browser(
            &team.owner,
            Method::POST,
            &format!("/v1/members/{}/remove", team.admin.user_id),
            Some(json!({"keys": "transfer", "transfer_to": team.owner.user_id})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["transferred"], json!([admins_key]));
    let key = app.get(&format!("/v1/keys/{admins_key}")).await;
    assert_eq!(key.body["owner"]["id"], team.owner.user_id.as_str());
    assert_eq!(key.body["status"], "active");
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);
}

async fn the_last_owner_stays_and_admins_cannot_touch_owners(app: TestApp) {
    let team = app.team().await;
    let path = format!("/v1/members/{}", team.owner.user_id);
    let demote = app
        .as_browser(
            &team.owner,
            Method::PATCH,
            &path,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(demote.code(), "last_owner");
    let remove = app
        .as_browser(
            &team.owner,
            Method::POST,
            &format!("{path}/remove"),
            Some(json!({"keys": "revoke"})),
        )
        .await;
    assert_eq!(remove.code(), "last_owner");
    let by_admin = app
        .as_browser(
            &team.admin,
            Method::PATCH,
            &path,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::FORBIDDEN);
    let promote = app
        .as_browser(
            &team.admin,
            Method::PATCH,
            &format!("/v1/members/{}", team.viewer.user_id),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(promote.status, StatusCode::FORBIDDEN);
    let ok = app
        .as_browser(
            &team.admin,
            Method::PATCH,
            &format!("/v1/members/{}", team.viewer.user_id),
            Some(json!({"role": "developer"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["role"], "developer");
}

/// A key rotated with a long grace period keeps working with its scopes until the grace ends,
/// and cannot be edited. When its owner's role shrinks, reconciling (`narrow`) narrows the
/// successor and ends the old key's grace (revokes it): otherwise it would go on with scopes
/// the owner no longer holds for the rest of its grace.
async fn a_key_in_a_rotation_grace_period_is_reconciled_with_its_successor(app: TestApp) {
    let team = app.team().await;
    let support = support_member(&app, &team).await;
    let (status, made) = create(&app, &support, "tickets", &["tickets:read"]).await;
    assert_eq!(status, StatusCode::CREATED);
    let old = made["record"]["id"].as_str().expect("id").to_owned();
    let rotated = app
        .post(
            &format!("/v1/keys/{old}/rotate"),
            json!({"grace_seconds": 30 * 86_400}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let successor = rotated.body["record"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    shrink_support(&app, &team).await;
    let before = app.get(&format!("/v1/keys/{old}")).await;
    assert_eq!(before.body["status"], "active");
    assert_eq!(before.body["exceeds_owner_scopes"], true);
    let narrowed = reconcile(&app, &team, json!({"action": "narrow"})).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{:?}", narrowed.body);
    assert_eq!(narrowed.body["data"].as_array().map(Vec::len), Some(2));
    // Reconciling one member's keys names a member: anyone else is a 404, as documented.
    let nobody = reconcile(
        &app,
        &team,
        json!({"action": "narrow", "owner": "usr_0000000000000000000001"}),
    )
    .await;
    assert_eq!(
        (nobody.status, nobody.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{:?}",
        nobody.body
    );
    let old = app.get(&format!("/v1/keys/{old}")).await;
    assert_eq!(old.body["status"], "revoked", "{:?}", old.body);
    let successor = app.get(&format!("/v1/keys/{successor}")).await;
    assert_eq!(successor.body["status"], "active");
    assert_eq!(successor.body["scopes"], json!([]));
    assert_eq!(successor.body["exceeds_owner_scopes"], false);
}
