//! A person's standing is checked again where their change is made: a member removed, or
//! given another role, while their calls were on their way changes nothing after; and a
//! member's role that changed after the caller's right to change it was judged is not changed.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use keyplane_control_plane::access::RoleName;
use keyplane_control_plane::error::ApiError;
use keyplane_control_plane::store::{
    AuditContext, CallerEnded, Conflict, JudgedMember, KeyChanges, KeysOnRemoval, Reach, StoreError,
};
use keyplane_shared::ids::{KeyId, OrgId, UserId};
use serde_json::json;

use crate::backends;
use crate::helpers::people::Browser;
use crate::helpers::{TestApp, creates_under_way};

backends!(
    a_member_removed_while_their_creates_wait_makes_no_key_after,
    a_person_removed_before_their_change_reaches_the_store_changes_nothing,
    a_person_whose_role_changed_before_their_change_reaches_the_store_changes_nothing,
    a_member_whose_role_changed_after_it_was_judged_is_not_changed,
);

fn user_of(browser: &Browser) -> UserId {
    browser.user_id.parse().expect("a user id")
}

fn role(name: &str) -> RoleName {
    RoleName::parse(name).expect("a role name")
}

/// The context session authentication gives `browser`'s calls while they hold `role_name`:
/// their role, and the reach that role gives.
async fn session_context(
    app: &TestApp,
    org: OrgId,
    browser: &Browser,
    role_name: &str,
) -> AuditContext {
    let access = app
        .state
        .member_access(org, role(role_name))
        .await
        .expect("the role's access");
    let user = user_of(browser);
    AuditContext {
        actor_user: Some(user),
        session_role: Some(role(role_name)),
        reach: Reach {
            ceiling: access.ceiling,
            owner: (role_name == "developer").then_some(user),
        },
        request_id: "req_in_flight".into(),
        ..AuditContext::default()
    }
}

/// A renaming of `key` by `context`'s caller, straight to the store.
async fn rename(
    app: &TestApp,
    org: OrgId,
    key: &str,
    context: &AuditContext,
) -> Result<(), StoreError> {
    let changes = KeyChanges {
        name: Some("renamed".into()),
        ..KeyChanges::default()
    };
    let key = KeyId::parse(key).expect("a key id");
    app.store
        .update_key(org, key, changes, context, app.state.now())
        .await
        .map(drop)
}

async fn create_as(app: &TestApp, who: &Browser, name: &str) -> String {
    let reply = app
        .as_browser(
            who,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": name, "environment": "test"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["record"]["id"].as_str().expect("id").to_owned()
}

/// A developer's session floods `POST /v1/keys`; the owner removes the developer (their keys
/// revoked) as soon as the first create answers. The creates still waiting for their hashing
/// commit before the removal or are refused with 401 `invalid_session`: none makes a key after
/// it, which would outlive the removal that was to revoke every key of theirs.
async fn a_member_removed_while_their_creates_wait_makes_no_key_after(app: TestApp) {
    let team = app.team().await;
    let developer = team.developer.clone();
    let app = Arc::new(app);
    let creates = creates_under_way(24, |n| {
        let (app, developer) = (app.clone(), developer.clone());
        async move {
            let body = json!({"name": format!("made {n}"), "environment": "test"});
            app.as_browser(&developer, Method::POST, "/v1/keys", Some(body))
                .await
        }
    })
    .await;
    let removed = app
        .as_browser(
            &team.owner,
            Method::POST,
            &format!("/v1/members/{}/remove", developer.user_id),
            Some(json!({"keys": "revoke"})),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    let mut made = Vec::new();
    for create in creates {
        let reply = create.await.expect("task");
        match reply.status {
            StatusCode::CREATED => {
                made.push(reply.body["record"]["id"].as_str().expect("id").to_owned())
            }
            StatusCode::UNAUTHORIZED => {
                assert_eq!(reply.code(), "invalid_session", "{:?}", reply.body)
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert!(!made.is_empty());
    // Every key they made was revoked by the removal: none came after it.
    for key in &made {
        let record = app.get(&format!("/v1/keys/{key}")).await;
        assert_eq!(record.body["status"], "revoked", "{key}: {:?}", record.body);
    }
    let trail = app.audit().await;
    let removal = trail
        .iter()
        .position(|r| r["action"] == "member_removed")
        .expect("the removal");
    assert!(
        trail[removal..]
            .iter()
            .all(|r| !(r["action"] == "key_created"
                && r["actor_user_id"] == developer.user_id.as_str())),
        "a key was made by the removed member after the removal"
    );
}

/// Made certain: a change by a person whose session was checked before they were removed
/// reaches the store and is refused there, under the organization's lock (401
/// `invalid_session` at the API), and nothing changes.
async fn a_person_removed_before_their_change_reaches_the_store_changes_nothing(app: TestApp) {
    let team = app.team().await;
    let org = app.only_org_id().await;
    let key = create_as(&app, &team.developer, "dev's").await;
    let context = session_context(&app, org, &team.developer, "developer").await;
    let owner = user_of(&team.owner);
    app.store
        .remove_member(
            org,
            user_of(&team.developer),
            &role("developer"),
            KeysOnRemoval::TransferTo(owner),
            &AuditContext::default(),
            app.state.now(),
        )
        .await
        .expect("removed, the key transferred");
    let refused = rename(&app, org, &key, &context).await;
    assert!(
        matches!(refused, Err(StoreError::CallerEnded(CallerEnded::Removed))),
        "{refused:?}"
    );
    let answer = ApiError::from(refused.expect_err("refused"));
    assert_eq!(answer.code(), "invalid_session");
    let unchanged = app.get(&format!("/v1/keys/{key}")).await;
    assert_eq!(unchanged.body["name"], "dev's");
}

/// The same for a person given another role, or whose role's ceiling changed: 409
/// `role_changed` (the call can be made again and is judged under the new role). A person
/// whose standing did not change is let through.
async fn a_person_whose_role_changed_before_their_change_reaches_the_store_changes_nothing(
    app: TestApp,
) {
    let team = app.team().await;
    let org = app.only_org_id().await;
    let key = create_as(&app, &team.developer, "dev's").await;
    let admin = session_context(&app, org, &team.admin, "admin").await;
    let developer = session_context(&app, org, &team.developer, "developer").await;
    // The admin is made a viewer while their rename waits.
    let demoted = app
        .as_browser(
            &team.owner,
            Method::PATCH,
            &format!("/v1/members/{}", team.admin.user_id),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{:?}", demoted.body);
    let refused = rename(&app, org, &key, &admin).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Conflict::RoleChanged))),
        "{refused:?}"
    );
    assert_eq!(
        ApiError::from(refused.expect_err("refused")).code(),
        "role_changed"
    );
    // The developer role's ceiling narrows while the developer's rename waits.
    let narrowed = app
        .as_browser(
            &team.owner,
            Method::PUT,
            "/v1/roles/developer",
            Some(json!({"scopes": ["billing:read"]})),
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{:?}", narrowed.body);
    let refused = rename(&app, org, &key, &developer).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Conflict::RoleChanged))),
        "{refused:?}"
    );
    assert_eq!(
        app.get(&format!("/v1/keys/{key}")).await.body["name"],
        "dev's"
    );
    // Judged under the role as it now stands, the same change goes through.
    let current = session_context(&app, org, &team.developer, "developer").await;
    rename(&app, org, &key, &current)
        .await
        .expect("a rename by a developer in good standing");
    assert_eq!(
        app.get(&format!("/v1/keys/{key}")).await.body["name"],
        "renamed"
    );
}

/// An admin judged allowed to change a developer (not an owner) must not change them once
/// an owner has made them an owner meanwhile: the store changes a member only from the role
/// the caller's right was judged on (409 `member_changed`), for role changes, removals and
/// the roles portal links set.
async fn a_member_whose_role_changed_after_it_was_judged_is_not_changed(app: TestApp) {
    let team = app.team().await;
    let org = app.only_org_id().await;
    let admin = session_context(&app, org, &team.admin, "admin").await;
    let target = user_of(&team.developer);
    let promoted = app
        .as_browser(
            &team.owner,
            Method::PATCH,
            &format!("/v1/members/{}", team.developer.user_id),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    let now = app.state.now();
    let demoted = app
        .store
        .change_role(
            org,
            target,
            &role("developer"),
            &role("viewer"),
            &admin,
            now,
        )
        .await;
    assert!(
        matches!(demoted, Err(StoreError::Conflict(Conflict::MemberChanged))),
        "{demoted:?}"
    );
    assert_eq!(
        ApiError::from(demoted.expect_err("refused")).code(),
        "member_changed"
    );
    let removed = app
        .store
        .remove_member(
            org,
            target,
            &role("developer"),
            KeysOnRemoval::Revoke,
            &admin,
            now,
        )
        .await;
    assert!(
        matches!(removed, Err(StoreError::Conflict(Conflict::MemberChanged))),
        "{removed:?}"
    );
    // The same for a portal link a host product's token asks for another person, which sets
    // their role: judged on their being a developer, or on their not being a member.
    for judged in [Some(&role("developer")), None] {
        let synced = app
            .store
            .sync_member(
                org,
                target,
                &role("viewer"),
                JudgedMember::As(judged),
                &admin,
                now,
            )
            .await;
        assert!(
            matches!(synced, Err(StoreError::Conflict(Conflict::MemberChanged))),
            "{judged:?}: {synced:?}"
        );
    }
    let members = app.get("/v1/members").await.body;
    let member = members["data"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user"]["id"] == team.developer.user_id.as_str())
        .expect("still a member");
    assert_eq!(member["role"], "owner", "{member:?}");
    // Through the API the admin is refused outright: the role is read as it now stands.
    let by_admin = app
        .as_browser(
            &team.admin,
            Method::PATCH,
            &format!("/v1/members/{}", team.developer.user_id),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(
        by_admin.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        by_admin.body
    );
}
