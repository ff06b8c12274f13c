//! The dashboard's key pages as a careful user and an attacker would try them, without a
//! browser: a key shown exactly once, regenerate with grace then revoke, a viewer who can
//! neither see nor forge the controls, another organization's keys, and bad input that is
//! explained and loses nothing.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::dashboard::key_count;
use crate::helpers::TestApp;
use crate::helpers::pages::{form, origin};

backends!(
    a_new_key_is_shown_once_and_never_again,
    regenerating_with_grace_keeps_the_old_key_then_revoking_it_records_why,
    a_viewer_sees_no_controls_and_a_forged_post_is_refused,
    another_organizations_key_is_not_found,
    bad_input_is_explained_and_nothing_typed_is_lost,
);

async fn a_new_key_is_shown_once_and_never_again(app: TestApp) {
    let owner = app.first_owner().await;
    let page = app
        .submit(
            &owner,
            "/keys/new",
            "/keys/new",
            &[
                ("name", "Billing sync"),
                ("environment", "live"),
                ("more_scopes", "billing:read billing:write"),
                ("expires", "30d"),
                ("requests_per_minute", "120"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(page.headers["cache-control"], "no-store");
    let key = page.text_of("new-key").expect("the key on the page");
    let truncated = page.text_of("truncated-key").expect("its truncated form");
    assert!(key.starts_with("sk_live_"), "{key}");
    assert!(page.html.contains("You will not see it again."));
    assert!(page.html.contains("data-copy=\"new-key\""), "a copy button");
    // The key works, with what was asked for.
    let record = app
        .call(Method::GET, "/v1/keys?limit=1", Some(&key), None)
        .await;
    assert_eq!(
        record.status,
        StatusCode::FORBIDDEN,
        "a key without admin scopes cannot list keys: it authenticated"
    );
    let listed = app.get("/v1/keys?name=Billing").await;
    let id = listed.body["data"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        listed.body["data"][0]["scopes"],
        json!(["billing:read", "billing:write"])
    );
    assert_eq!(
        listed.body["data"][0]["rate_limit"],
        json!({"requests_per_minute": 120, "burst": 12})
    );
    assert!(
        page.html
            .contains(&format!("data-replace-url=\"/keys/{id}\"")),
        "reload lands on the key's page"
    );
    // After that: the truncated form only, everywhere.
    for path in [
        format!("/keys/{id}"),
        "/keys".to_owned(),
        "/audit".to_owned(),
    ] {
        let later = app.open(&owner, &path).await;
        assert_eq!(later.status, StatusCode::OK, "{path}");
        assert!(!later.html.contains(&key), "{path} shows the key again");
        assert!(
            !later.html.contains(&key[8..]),
            "{path} shows the key's secret part"
        );
    }
    assert!(
        app.open(&owner, &format!("/keys/{id}"))
            .await
            .html
            .contains(&truncated)
    );
    // The same form posted again (a reload without the page's script, a double click) makes no
    // second key and shows no key.
    let form_page = app.open(&owner, "/keys/new").await;
    let body = form(&[
        ("csrf", form_page.csrf().as_str()),
        ("once", form_page.field("once").expect("token").as_str()),
        ("name", "twice"),
        ("environment", "test"),
        ("expires", "7d"),
    ]);
    let here = origin();
    let post = || {
        app.page_request(
            Method::POST,
            "/keys/new",
            Some(&owner.cookie),
            Some(&here),
            Some(body.clone()),
        )
    };
    let first = post().await;
    assert_eq!(first.status, StatusCode::OK);
    let twice = post().await;
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
    assert_eq!(twice.location(), "/keys?done=resubmitted");
    assert!(!twice.html.contains("sk_test_"));
    assert_eq!(
        app.get("/v1/keys?name=twice").await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn regenerating_with_grace_keeps_the_old_key_then_revoking_it_records_why(app: TestApp) {
    let owner = app.first_owner().await;
    let (old_key, record) = app
        .create_key(json!({"name": "worker", "environment": "live", "expires": "30d"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let page = app
        .submit(
            &owner,
            &format!("/keys/{id}/regenerate"),
            &format!("/keys/{id}/regenerate"),
            &[("grace_seconds", "3600")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let new_key = page.text_of("new-key").expect("the new key");
    assert_ne!(new_key, old_key);
    assert!(page.html.contains("keeps working until"), "{}", page.html);
    let old = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(
        old.body["status"], "active",
        "the old key works during the grace period"
    );
    let revoked = app
        .submit(
            &owner,
            &format!("/keys/{id}/revoke"),
            &format!("/keys/{id}/revoke"),
            // Line breaks as a browser sends a textarea's: CRLF.
            &[
                ("reason", "compromised"),
                ("note", "pasted in a chat\r\nrotated at once"),
            ],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(revoked.location(), format!("/keys/{id}?done=revoked"));
    let old = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(old.body["status"], "revoked");
    assert_eq!(old.body["revocation_reason"], "compromised");
    assert_eq!(
        old.body["revocation_note"],
        "pasted in a chat\nrotated at once"
    );
    let audit = app.open(&owner, "/audit").await.html;
    for action in ["key_created", "key_rotated", "key_revoked"] {
        assert!(audit.contains(action), "{action} on the audit page");
    }
    assert!(
        audit.contains("Chain verified"),
        "the chain's verification is shown"
    );
    let unknown = app
        .submit(
            &owner,
            &format!("/keys/{id}"),
            &format!("/keys/{id}/revoke"),
            &[("reason", "boredom")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    // The revoked key can be deleted; the active successor cannot (the page says why).
    let successor = old.body["rotated_to"]
        .as_str()
        .expect("successor")
        .to_owned();
    let refused = app.open(&owner, &format!("/keys/{successor}/delete")).await;
    assert!(refused.html.contains("Revoke it first"), "{}", refused.html);
    let deleted = app
        .submit(
            &owner,
            &format!("/keys/{id}/delete"),
            &format!("/keys/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.html);
    assert_eq!(deleted.location(), "/keys?done=deleted");
    let list = app.open(&owner, "/keys?status=revoked").await;
    assert!(!list.html.contains(&id), "a deleted key is listed");
    assert!(
        app.open(&owner, "/keys?done=deleted")
            .await
            .html
            .contains("The key was deleted")
    );
}

async fn a_viewer_sees_no_controls_and_a_forged_post_is_refused(app: TestApp) {
    let owner = app.first_owner().await;
    let viewer = app
        .member(&owner, "vera@example.com", "Vera Viewer", "viewer")
        .await;
    let (_, record) = app
        .create_key(json!({"name": "production", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    let list = app.open(&viewer, "/keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.html.contains("production"), "viewers read");
    assert!(!list.html.contains("Create API key"));
    let detail = app.open(&viewer, &format!("/keys/{id}")).await;
    for control in ["Revoke", "Regenerate", "Edit", "/revoke", "/regenerate"] {
        assert!(
            !detail.html.contains(control),
            "{control} shown to a viewer"
        );
    }
    assert_eq!(
        app.open(&viewer, "/keys/new").await.status,
        StatusCode::FORBIDDEN
    );
    let before = key_count(&app).await;
    // Forged posts with the viewer's own, valid, CSRF token.
    let create = app
        .submit(
            &viewer,
            "/keys",
            "/keys/new",
            &[("name", "mine"), ("environment", "live"), ("expires", "7d")],
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN, "{}", create.html);
    let revoke = app
        .submit(
            &viewer,
            "/keys",
            &format!("/keys/{id}/revoke"),
            &[("reason", "compromised")],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN, "{}", revoke.html);
    let regenerate = app
        .submit(
            &viewer,
            "/keys",
            &format!("/keys/{id}/regenerate"),
            &[("grace_seconds", "0")],
        )
        .await;
    assert_eq!(
        regenerate.status,
        StatusCode::FORBIDDEN,
        "{}",
        regenerate.html
    );
    assert_eq!(key_count(&app).await, before);
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.body["status"],
        "active"
    );
    let invite = app
        .submit(
            &viewer,
            "/members",
            "/members/invite",
            &[("email", "friend@example.com"), ("role", "owner")],
        )
        .await;
    assert_eq!(invite.status, StatusCode::FORBIDDEN, "{}", invite.html);
}

async fn another_organizations_key_is_not_found(app: TestApp) {
    let owner = app.first_owner().await;
    let (_, other_admin) =
        keyplane_control_plane::bootstrap::create_organization(&app.state, "Globex")
            .await
            .expect("second organization");
    let reply = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(other_admin.expose_secret()),
            Some(json!({"name": "globex secret", "environment": "live"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.body["record"]["id"].as_str().expect("id").to_owned();
    for path in [
        format!("/keys/{id}"),
        format!("/keys/{id}/revoke"),
        format!("/keys/{id}/edit"),
    ] {
        let page = app.open(&owner, &path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.html.contains("globex secret"), "{path}");
    }
    let revoke = app
        .submit(
            &owner,
            "/keys",
            &format!("/keys/{id}/revoke"),
            &[("reason", "compromised")],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND);
    assert!(
        !app.open(&owner, "/keys")
            .await
            .html
            .contains("globex secret")
    );
    let still = app
        .call(
            Method::GET,
            &format!("/v1/keys/{id}"),
            Some(other_admin.expose_secret()),
            None,
        )
        .await;
    assert_eq!(still.body["status"], "active");
}

async fn bad_input_is_explained_and_nothing_typed_is_lost(app: TestApp) {
    let owner = app.first_owner().await;
    let before = key_count(&app).await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("name", "reports"),
                ("environment", "live"),
                ("more_scopes", "Not A Scope"),
                ("expires", "7d"),
            ],
            "scope",
        ),
        (
            &[
                ("name", "reports"),
                ("environment", "live"),
                ("expires", "date"),
                ("expires_date", "2001-01-01"),
            ],
            "future",
        ),
        (
            &[
                ("name", "reports"),
                ("environment", "live"),
                ("expires", "date"),
                ("expires_date", ""),
            ],
            "pick the expiry date",
        ),
        (
            &[
                ("name", "reports"),
                ("environment", "live"),
                ("expires", "7d"),
                ("requests_per_minute", "lots"),
            ],
            "whole number",
        ),
    ];
    for (fields, says) in cases {
        let page = app.submit(&owner, "/keys/new", "/keys/new", fields).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{fields:?}: {}",
            page.html
        );
        assert!(page.html.contains("role=\"alert\""), "{fields:?}");
        assert!(
            page.html.to_lowercase().contains(says),
            "{fields:?} should say {says}: {}",
            page.html
        );
        assert!(
            page.html.contains("value=\"reports\""),
            "the name typed is kept"
        );
    }
    let empty = app
        .submit(
            &owner,
            "/keys/new",
            "/keys/new",
            &[("name", ""), ("environment", "live"), ("expires", "7d")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let garbage = app
        .page_request(
            Method::POST,
            "/keys/new",
            Some(&owner.cookie),
            Some(&origin()),
            Some("%%%&&&===".into()),
        )
        .await;
    assert!(garbage.status.is_client_error(), "{}", garbage.status);
    assert_eq!(key_count(&app).await, before, "no bad form made a key");
}
