//! The dashboard's pages as an attacker would try them, without a browser (the browser tests
//! are end to end, in `tests/`): the security headers on every page, forms that need the page's
//! CSRF token and origin, sign-in, escaping, and invitations from the members page. The key
//! pages: `dashboard_keys.rs`.

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
    names_are_escaped,
    invitations_from_the_members_page_show_the_link_once,
    members_change_role_and_leave_with_their_keys_revoked_or_transferred,
    odd_addresses_and_unreadable_forms_get_the_dashboards_own_pages,
    an_edge_current_by_its_own_pulls_shows_no_lag,
);

pub(crate) async fn key_count(app: &TestApp) -> usize {
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
        "/organizations".to_owned(),
        format!("/keys/{id}/delete"),
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
    let page = app.open(&owner, "/keys/new").await;
    let csrf = page.csrf();
    let once = page.field("once").expect("a one-submission token");
    let fields = |token: &str| {
        form(&[
            ("csrf", token),
            ("once", &once),
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
    // Inviting a member again is refused, and the form keeps what was typed.
    let refused = app
        .submit(
            &owner,
            "/members",
            "/members/invite",
            &[("email", "dev@example.com"), ("role", "admin")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    assert!(
        refused.html.contains(r#"id="invite-email" name="email" type="email" required autocomplete="off" value="dev@example.com""#),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains(r#"<option value="admin" selected>"#),
        "{}",
        refused.html
    );
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

async fn members_change_role_and_leave_with_their_keys_revoked_or_transferred(app: TestApp) {
    let owner = app.first_owner().await;
    let dev = app
        .member(&owner, "dev@example.com", "Dana Dev", "developer")
        .await;
    let ops = app
        .member(&owner, "ops@example.com", "Omar Ops", "developer")
        .await;
    let make = |browser: &crate::helpers::people::Browser, name: &str| {
        let body = json!({"name": name, "environment": "live"});
        let browser = browser.clone();
        let app = &app;
        async move {
            let reply = app
                .as_browser(&browser, Method::POST, "/v1/keys", Some(body))
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
            reply.body["record"]["id"].as_str().expect("id").to_owned()
        }
    };
    let dev_key = make(&dev, "dana's worker").await;
    let ops_key = make(&ops, "omar's cron").await;
    // Change a role from the page.
    let changed = app
        .submit(
            &owner,
            "/members",
            &format!("/members/{}/role", dev.user_id),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    assert_eq!(changed.location(), "/members?done=role");
    let members = app.get("/v1/members").await;
    let role_of = |id: &str| {
        members.body["data"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["user"]["id"] == id))
            .map(|m| m["role"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(role_of(&dev.user_id).as_deref(), Some("viewer"));
    // The last owner cannot be demoted: the page says why.
    let last = app
        .submit(
            &owner,
            "/members",
            &format!("/members/{}/role", owner.user_id),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.html);
    assert!(last.html.contains("role=\"alert\""));
    // Remove one with their keys transferred, the other with their keys revoked.
    let page = app
        .open(&owner, &format!("/members/{}/remove", dev.user_id))
        .await;
    assert!(page.html.contains("Revoke their keys") && page.html.contains("Transfer them to"));
    let transferred = app
        .submit(
            &owner,
            "/members",
            &format!("/members/{}/remove", dev.user_id),
            &[("keys", "transfer"), ("transfer_to", &owner.user_id)],
        )
        .await;
    assert_eq!(
        transferred.status,
        StatusCode::SEE_OTHER,
        "{}",
        transferred.html
    );
    let moved = app.get(&format!("/v1/keys/{dev_key}")).await;
    assert_eq!(moved.body["status"], "active");
    assert_eq!(moved.body["owner"]["id"], owner.user_id.as_str());
    let revoked = app
        .submit(
            &owner,
            "/members",
            &format!("/members/{}/remove", ops.user_id),
            &[("keys", "revoke")],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    let gone = app.get(&format!("/v1/keys/{ops_key}")).await;
    assert_eq!(gone.body["status"], "revoked");
    assert_eq!(gone.body["revocation_reason"], "employee_departure");
    let list = app.open(&owner, "/members?done=removed").await.html;
    assert!(list.contains("Member removed."));
    assert!(!list.contains("Dana Dev") && !list.contains("Omar Ops"));
}

async fn odd_addresses_and_unreadable_forms_get_the_dashboards_own_pages(app: TestApp) {
    let owner = app.first_owner().await;
    let cookie = Some(owner.cookie.as_str());
    let page_origin = origin();
    // (method, path, form body, expected status, what the page says): a path segment that is
    // not UTF-8 once decoded names nothing; a query field given twice and a form that is no
    // form cannot be read.
    let cases = [
        (
            Method::GET,
            "/keys/%FF",
            None,
            StatusCode::NOT_FOUND,
            "Not found",
        ),
        (
            Method::GET,
            "/webhooks/%FF",
            None,
            StatusCode::NOT_FOUND,
            "Not found",
        ),
        (
            Method::POST,
            "/members/%FF/remove",
            Some(""),
            StatusCode::NOT_FOUND,
            "Not found",
        ),
        (
            Method::GET,
            "/keys?status=active&status=revoked",
            None,
            StatusCode::BAD_REQUEST,
            "duplicate field",
        ),
        (
            Method::GET,
            "/audit?action=a&action=b",
            None,
            StatusCode::BAD_REQUEST,
            "duplicate field",
        ),
        (
            Method::POST,
            "/sign-in",
            None,
            StatusCode::BAD_REQUEST,
            "That form could not be read",
        ),
    ];
    for (method, path, body, status, says) in cases {
        let page = app
            .page_request(
                method.clone(),
                path,
                cookie,
                Some(&page_origin),
                body.map(str::to_owned),
            )
            .await;
        assert_eq!(page.status, status, "{method} {path}: {}", page.html);
        assert!(
            page.headers["content-type"]
                .to_str()
                .is_ok_and(|value| value.starts_with("text/html")),
            "{method} {path}: {:?}",
            page.headers["content-type"]
        );
        assert!(
            page.headers["content-security-policy"]
                .to_str()
                .is_ok_and(|policy| policy.contains("script-src 'self';")),
            "{method} {path}"
        );
        assert!(page.html.starts_with("<!DOCTYPE html>"), "{method} {path}");
        assert!(page.html.contains(says), "{method} {path}: {}", page.html);
    }
}

/// The edges page counts an edge's lag from what it holds, as `keyplane edges list` does: an
/// edge whose pushes never arrive but whose own pulls keep it at the head is not behind.
async fn an_edge_current_by_its_own_pulls_shows_no_lag(app: TestApp) {
    let owner = app.first_owner().await;
    let pull = async |seq: u64| {
        app.store
            .register_edge("paris", "http://127.0.0.1:8787", Some(seq), app.state.now())
            .await
            .expect("registered by its pull");
    };
    // Its first pull registers it at the head; no push reaches it after that.
    pull(app.store.feed_head().await.expect("the head")).await;
    for name in ["one", "two", "three"] {
        app.create_key(json!({"name": name, "environment": "live"}))
            .await;
    }
    let head = app.store.feed_head().await.expect("the head");
    pull(head).await;
    let edge = &app.store.edges().await.expect("edges")[0];
    assert!(edge.acked_seq + 3 <= head, "no push acknowledged: {edge:?}");
    let page = app.open(&owner, "/edges").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("<td>0 changes</td>"), "{}", page.html);
}
