//! The dashboard's pages as an attacker and a careful user would try them, without a browser
//! (the browser tests are end to end, in `tests/`): the security headers on every page, forms
//! that need the page's CSRF token and origin, a key shown exactly once, a viewer who can
//! neither see nor forge the controls, another organization's keys, escaping, and bad input
//! that is explained and loses nothing.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::pages::{form, origin};
use crate::helpers::people::PASSWORD;

backends!(
    every_page_carries_a_strict_policy_and_is_never_framed_or_stored,
    without_a_session_pages_send_to_sign_in_and_posts_change_nothing,
    a_form_post_needs_the_pages_csrf_token_and_origin,
    sign_in_checks_the_origin_and_says_nothing_about_accounts,
    a_new_key_is_shown_once_and_never_again,
    regenerating_with_grace_keeps_the_old_key_then_revoking_it_records_why,
    a_viewer_sees_no_controls_and_a_forged_post_is_refused,
    another_organizations_key_is_not_found,
    names_are_escaped,
    bad_input_is_explained_and_nothing_typed_is_lost,
    invitations_from_the_members_page_show_the_link_once,
);

async fn key_count(app: &TestApp) -> usize {
    let reply = app.get("/v1/keys?limit=200").await;
    reply.body["data"].as_array().map_or(0, Vec::len)
}

async fn every_page_carries_a_strict_policy_and_is_never_framed_or_stored(app: TestApp) {
    let owner = app.first_owner().await;
    let (_, record) = app
        .create_key(json!({"name": "probe", "environment": "test"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let paths = [
        "/sign-in".to_owned(),
        "/invitation".to_owned(),
        "/keys".to_owned(),
        "/keys/new".to_owned(),
        format!("/keys/{id}"),
        format!("/keys/{id}/edit"),
        format!("/keys/{id}/regenerate"),
        format!("/keys/{id}/revoke"),
        "/audit".to_owned(),
        "/members".to_owned(),
        "/edges".to_owned(),
        "/account".to_owned(),
    ];
    for path in &paths {
        let page = app.open(&owner, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.html);
        let policy = page.headers["content-security-policy"]
            .to_str()
            .expect("ascii");
        assert!(policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(policy.contains("style-src 'self';"), "{path}: {policy}");
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(page.headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(page.headers["cache-control"], "no-store", "{path}");
        assert_eq!(page.headers["x-content-type-options"], "nosniff", "{path}");
        // Nothing the policy would block: no inline script, style or handler.
        assert!(!page.html.contains("<script>"), "{path}");
        assert!(!page.html.contains(" style="), "{path}");
        assert!(!page.html.contains(" onclick="), "{path}");
        assert!(
            page.html.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{path}"
        );
    }
    let script = app.open(&owner, "/assets/dashboard.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
}

async fn without_a_session_pages_send_to_sign_in_and_posts_change_nothing(app: TestApp) {
    for path in ["/", "/keys", "/keys/new", "/audit", "/members", "/account"] {
        let page = app.page_request(Method::GET, path, None, None, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/sign-in", "{path}");
    }
    let before = key_count(&app).await;
    let body = form(&[
        ("csrf", "x"),
        ("name", "sneaky"),
        ("environment", "live"),
        ("expires", "7d"),
    ]);
    let page = app
        .page_request(
            Method::POST,
            "/keys/new",
            Some("__Host-keyplane_session=forged"),
            Some(&origin()),
            Some(body),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(key_count(&app).await, before);
}

async fn a_form_post_needs_the_pages_csrf_token_and_origin(app: TestApp) {
    let owner = app.first_owner().await;
    let before = key_count(&app).await;
    let csrf = app.open(&owner, "/keys/new").await.csrf();
    let fields = |token: &str| {
        form(&[
            ("csrf", token),
            ("name", "billing"),
            ("environment", "live"),
            ("expires", "7d"),
        ])
    };
    let attempts = [
        ("no token", fields(""), Some(origin())),
        (
            "a wrong token",
            fields("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Some(origin()),
        ),
        (
            "another site",
            fields(&csrf),
            Some("https://evil.example".to_owned()),
        ),
        ("no origin", fields(&csrf), None),
    ];
    for (what, body, from) in attempts {
        let page = app
            .page_request(
                Method::POST,
                "/keys/new",
                Some(&owner.cookie),
                from.as_deref(),
                Some(body),
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.html);
        assert!(page.html.contains("This form has expired"), "{what}");
    }
    assert_eq!(key_count(&app).await, before, "no refused post made a key");
    let page = app
        .page_request(
            Method::POST,
            "/keys/new",
            Some(&owner.cookie),
            Some(&origin()),
            Some(fields(&csrf)),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(key_count(&app).await, before + 1);
}

async fn sign_in_checks_the_origin_and_says_nothing_about_accounts(app: TestApp) {
    app.first_owner().await;
    let post = |email: &str, password: &str, from: Option<String>| {
        let body = form(&[("email", email), ("password", password)]);
        let app = &app;
        async move {
            app.page_request(Method::POST, "/sign-in", None, from.as_deref(), Some(body))
                .await
        }
    };
    let forged = post(
        "owner@example.com",
        PASSWORD,
        Some("https://evil.example".into()),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "login CSRF refused");
    assert!(forged.headers.get("set-cookie").is_none());
    let wrong = post(
        "owner@example.com",
        "not the password at all",
        Some(origin()),
    )
    .await;
    let unknown = post(
        "nobody@example.com",
        "not the password at all",
        Some(origin()),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let message = |html: &str| {
        html.split("role=\"alert\"")
            .nth(1)
            .unwrap_or("")
            .split("</div>")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        message(&wrong.html),
        message(&unknown.html),
        "one answer for both"
    );
    assert!(
        wrong.html.contains("value=\"owner@example.com\""),
        "the email typed is kept"
    );
    assert!(
        !wrong.html.contains("not the password"),
        "the password typed is never echoed"
    );
    let right = post("owner@example.com", PASSWORD, Some(origin())).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(right.location(), "/keys");
    let cookie = right.headers["set-cookie"].to_str().expect("ascii");
    assert!(cookie.starts_with("__Host-keyplane_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
}

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
            &[("reason", "compromised"), ("note", "pasted in a chat")],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(revoked.location(), format!("/keys/{id}?done=revoked"));
    let old = app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(old.body["status"], "revoked");
    assert_eq!(old.body["revocation_reason"], "compromised");
    assert_eq!(old.body["revocation_note"], "pasted in a chat");
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

async fn names_are_escaped(app: TestApp) {
    let owner = app.first_owner().await;
    let name = "<img src=x onerror=alert(1)>";
    app.create_key(json!({"name": name, "environment": "test"}))
        .await;
    let list = app.open(&owner, "/keys").await;
    assert!(
        !list.html.contains(name),
        "raw markup from a name reached the page"
    );
    assert!(list.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
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

async fn invitations_from_the_members_page_show_the_link_once(app: TestApp) {
    let owner = app.first_owner().await;
    let page = app
        .submit(
            &owner,
            "/members",
            "/members/invite",
            &[("email", "dev@example.com"), ("role", "developer")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let link = page
        .text_of("invitation-link")
        .expect("the link, as no mailer is set");
    assert!(link.contains("/invitation#token="), "{link}");
    assert!(page.html.contains("data-replace-url=\"/members\""));
    assert!(
        !app.open(&owner, "/members").await.html.contains(&link),
        "shown once"
    );
    // The link's token opens the acceptance form, which names the invitee.
    let token = link.split_once("#token=").expect("token").1;
    let open = app
        .page_request(
            Method::POST,
            "/invitation/open",
            None,
            Some(&origin()),
            Some(form(&[("token", token)])),
        )
        .await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.html.contains("dev@example.com"));
    assert!(open.html.contains("Create account"));
    let joined = app
        .page_request(
            Method::POST,
            "/invitation",
            None,
            Some(&origin()),
            Some(form(&[
                ("token", token),
                ("display_name", "Dana Dev"),
                ("password", PASSWORD),
                ("confirm_password", PASSWORD),
            ])),
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.html);
    assert_eq!(joined.location(), "/keys");
    let again = app
        .page_request(
            Method::POST,
            "/invitation/open",
            None,
            Some(&origin()),
            Some(form(&[("token", token)])),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.html.contains("already been used"));
}
