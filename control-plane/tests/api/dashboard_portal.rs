//! The portal's pages without a browser: a one-time link from `POST /v1/portal/sessions` opens
//! the key pages once, in a partitioned cookie, branded, framable by the organization's origins
//! only, limited to the member's role, and blind to other organizations.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::pages::{Page, form, origin};
use crate::helpers::people::{Browser, browser_request, cookie_of};

backends!(
    a_portal_link_opens_the_key_pages_once_branded_and_framed_only_by_the_host,
    one_browser_keeps_its_dashboard_session_beside_a_portal_session,
);

const HOST_APP: &str = "https://app.example.com";

async fn enter(app: &TestApp, url: &str) -> Page {
    let token = url
        .split_once("#token=")
        .expect("a token in the fragment")
        .1;
    app.page_request(
        Method::POST,
        "/portal/enter",
        None,
        Some(&origin()),
        Some(form(&[("token", token)])),
    )
    .await
}

async fn a_portal_link_opens_the_key_pages_once_branded_and_framed_only_by_the_host(app: TestApp) {
    let owner = app.first_owner().await;
    let developer = app
        .member(&owner, "dev@example.com", "Dan Dev", "developer")
        .await;
    let branding = app
        .call(
            Method::PUT,
            "/v1/organization/branding",
            Some(&app.admin_key),
            Some(json!({"display_name": "Acme Cloud", "accent_color": "#aa3300", "frame_ancestors": [HOST_APP]})),
        )
        .await;
    assert_eq!(branding.status, StatusCode::OK, "{:?}", branding.body);
    let (_, own) = app
        .create_key(json!({"name": "someone else's", "environment": "live"}))
        .await;
    // Another organization's key, which the portal must never show.
    let (_, globex_admin) =
        keyplane_control_plane::bootstrap::create_organization(&app.state, "Globex")
            .await
            .expect("second organization");
    let globex = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(globex_admin.expose_secret()),
            Some(json!({"name": "globex secret", "environment": "live"})),
        )
        .await;
    let globex_id = globex.body["record"]["id"].as_str().expect("id").to_owned();

    let link = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": developer.user_id}, "return_url": format!("{HOST_APP}/settings/api")}),
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{:?}", link.body);
    let url = link.body["url"].as_str().expect("url").to_owned();
    assert!(url.contains("/portal/enter#token="), "{url}");

    let entry_page = app
        .page_request(Method::GET, "/portal/enter", None, None, None)
        .await;
    assert_eq!(entry_page.status, StatusCode::OK);
    assert!(entry_page.html.contains("data-from-fragment"));
    let entered = enter(&app, &url).await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER, "{}", entered.html);
    assert_eq!(entered.location(), "/keys");
    let cookie = entered.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.starts_with("__Host-keyplane_portal="), "{cookie}");
    for attribute in ["SameSite=None", "Secure", "Partitioned", "HttpOnly"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let again = enter(&app, &url).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a link works once");
    assert!(again.headers.get("set-cookie").is_none());

    let portal = Browser {
        cookie: cookie.split(';').next().expect("name=value").to_owned(),
        csrf: String::new(),
        user_id: developer.user_id.clone(),
    };
    let keys = app.open(&portal, "/keys").await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.html);
    assert!(
        keys.html.contains("Acme Cloud"),
        "branded with the organization's name"
    );
    assert!(
        keys.html.contains("Back to Acme Cloud"),
        "a way back to the host"
    );
    assert!(
        keys.html
            .contains(&format!("href=\"{HOST_APP}/settings/api\""))
    );
    assert!(!keys.html.contains("globex secret"));
    let policy = keys.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        policy.ends_with(&format!("frame-ancestors {HOST_APP}")),
        "{policy}"
    );
    assert!(
        keys.headers.get("x-frame-options").is_none(),
        "X-Frame-Options would forbid the host"
    );
    assert!(
        !keys.html.contains("href=\"/members\""),
        "no deployment or team pages in the portal"
    );
    // Nor are they served to it, whatever its role: not found, as the page says.
    for path in ["/members", "/webhooks", "/audit", "/account", "/edges"] {
        let page = app.open(&portal, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    let brand = app.open(&portal, "/brand.css").await;
    assert!(brand.html.contains("--accent: #aa3300"), "{}", brand.html);
    // Limited to the developer's role: another member's key cannot be revoked, another
    // organization's key does not exist.
    let own_id = own["id"].as_str().expect("id");
    assert!(
        !app.open(&portal, &format!("/keys/{own_id}"))
            .await
            .html
            .contains("/revoke")
    );
    let refused = app
        .submit(
            &portal,
            "/keys",
            &format!("/keys/{own_id}/revoke"),
            &[("reason", "compromised")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(
        app.open(&portal, &format!("/keys/{globex_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Creating a key of its own works, framed by the host.
    let created = app
        .submit(
            &portal,
            "/keys/new",
            "/keys/new",
            &[
                ("name", "from the portal"),
                ("environment", "test"),
                ("expires", "7d"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    assert!(
        created
            .text_of("new-key")
            .is_some_and(|key| key.starts_with("sk_test_"))
    );
    // Signing out of the portal ends its session; the page saying so stays in the host's
    // frame, with the way back (a redirect to the host would break the form-action policy).
    let signed_out = app.submit(&portal, "/keys", "/sign-out", &[]).await;
    assert_eq!(signed_out.status, StatusCode::OK, "{}", signed_out.html);
    assert!(signed_out.html.contains("You are signed out of Acme Cloud"));
    assert!(
        signed_out
            .html
            .contains(&format!("href=\"{HOST_APP}/settings/api\"")),
        "{}",
        signed_out.html
    );
    let policy = signed_out.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        policy.ends_with(&format!("frame-ancestors {HOST_APP}")),
        "{policy}"
    );
    let cleared = signed_out.headers["set-cookie"].to_str().expect("ascii");
    assert!(
        cleared.starts_with("__Host-keyplane_portal=") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = app.open(&portal, "/keys").await;
    assert_ne!(after.status, StatusCode::OK, "{}", after.html);
    assert!(!after.html.contains("from the portal"), "{}", after.html);
    // The dashboard's own pages are still never framed.
    let dashboard = app.open(&owner, "/keys").await;
    assert!(
        dashboard.headers["content-security-policy"]
            .to_str()
            .expect("ascii")
            .ends_with("frame-ancestors 'none'")
    );
}

/// `/v1/users/me` for a request carrying `cookies`: in a frame (`framed`), or at the top level.
async fn me(app: &TestApp, cookies: &str, framed: bool) -> serde_json::Value {
    let mut request = browser_request(Method::GET, "/v1/users/me", Some(cookies), None);
    if framed {
        request = request.header("sec-fetch-dest", "iframe");
    }
    let reply = app.send(request.body(Body::empty()).expect("valid")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

/// `keyplane_management_auth_failures_total{outcome="invalid_session"}` in `/metrics`.
async fn invalid_sessions_counted(app: &TestApp) -> u64 {
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().expect("text");
    let prefix = "keyplane_management_auth_failures_total{outcome=\"invalid_session\"} ";
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map_or(0, |count| count.parse().expect("a count"))
}

/// Who a request carrying `cookies` acts as.
async fn who(app: &TestApp, cookies: &str, framed: bool) -> serde_json::Value {
    me(app, cookies, framed).await["user"]["display_name"].clone()
}

/// Keyplane and the host product on one site (`keys.example.com`, `app.example.com`): the
/// browser of an owner signed in to the dashboard sends both cookies to the framed portal and
/// to the dashboard alike.
async fn one_browser_keeps_its_dashboard_session_beside_a_portal_session(app: TestApp) {
    let owner = app.first_owner().await;
    let developer = app
        .member(&owner, "dev@example.com", "Dan Dev", "developer")
        .await;
    let link = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": developer.user_id}, "return_url": format!("{HOST_APP}/keys")}),
        )
        .await;
    let url = link.body["url"].as_str().expect("url");
    let token = url.split_once("#token=").expect("token").1;
    // The portal is entered in the frame, the dashboard's cookie coming along.
    let entry = browser_request(
        Method::POST,
        "/portal/enter",
        Some(&owner.cookie),
        Some(&origin()),
    )
    .header("sec-fetch-dest", "iframe")
    .header("content-type", "application/x-www-form-urlencoded")
    .body(Body::from(form(&[("token", token)])))
    .expect("valid");
    let entered = app.send(entry).await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER, "{:?}", entered.body);
    let portal_cookie = cookie_of(&entered);
    // Both sessions live on; each context is served its own, in either cookie order.
    for cookies in [
        format!("{}; {portal_cookie}", owner.cookie),
        format!("{portal_cookie}; {}", owner.cookie),
    ] {
        assert_eq!(
            who(&app, &cookies, false).await,
            "Olivia Owner",
            "{cookies}"
        );
        assert_eq!(who(&app, &cookies, true).await, "Dan Dev", "{cookies}");
    }
    // Each alone is used wherever it is sent.
    assert_eq!(who(&app, &owner.cookie, true).await, "Olivia Owner");
    assert_eq!(who(&app, &portal_cookie, false).await, "Dan Dev");
    // A change made in the frame, with the portal session's CSRF token, is the developer's.
    let both = format!("{}; {portal_cookie}", owner.cookie);
    let csrf = me(&app, &both, true).await["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let create = browser_request(Method::POST, "/v1/keys", Some(&both), Some(&origin()))
        .header("sec-fetch-dest", "iframe")
        .header("x-csrf-token", csrf)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"name": "framed", "environment": "test"}).to_string(),
        ))
        .expect("valid");
    let created = app.send(create).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        created.body["record"]["owner"]["id"],
        developer.user_id.as_str()
    );
    // Signed out of the dashboard, its stale cookie no longer hides the portal session at the
    // top level (a portal link opened in a tab), and the CSRF token is the portal session's.
    let signed_out = app
        .as_browser(&owner, Method::DELETE, "/v1/sessions/current", None)
        .await;
    assert_eq!(signed_out.status, StatusCode::NO_CONTENT);
    let top = me(&app, &both, false).await;
    assert_eq!(top["user"]["display_name"], "Dan Dev");
    // Signed in after all: no authentication failure is counted for the stale cookie.
    assert_eq!(invalid_sessions_counted(&app).await, 0);
    assert_eq!(
        top["csrf_token"],
        me(&app, &portal_cookie, false).await["csrf_token"]
    );
    // The other way round, a frame whose portal session is over is told so: it is not served
    // the dashboard session (whose pages no frame may show).
    let owner_again = app.sign_in_as("owner@example.com").await;
    let portal_csrf = top["csrf_token"].as_str().expect("csrf").to_owned();
    let end_portal = browser_request(
        Method::DELETE,
        "/v1/sessions/current",
        Some(&portal_cookie),
        Some(&origin()),
    )
    .header("sec-fetch-dest", "iframe")
    .header("x-csrf-token", portal_csrf)
    .body(Body::empty())
    .expect("valid");
    assert_eq!(app.send(end_portal).await.status, StatusCode::NO_CONTENT);
    let both = format!("{}; {portal_cookie}", owner_again.cookie);
    let framed = browser_request(Method::GET, "/v1/users/me", Some(&both), None)
        .header("sec-fetch-dest", "iframe")
        .body(Body::empty())
        .expect("valid");
    assert_eq!(app.send(framed).await.code(), "invalid_session");
    assert_eq!(invalid_sessions_counted(&app).await, 1);
    assert_eq!(who(&app, &both, false).await, "Olivia Owner");
}
