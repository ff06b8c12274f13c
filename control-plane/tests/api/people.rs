//! Local accounts and sessions, as an attacker would try them: the first owner's setup, the
//! cookie's attributes, session fixation, CSRF, sign-out, throttling, and passwords.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::people::{Browser, HOST, PASSWORD, cookie_of, token_of};

backends!(
    the_first_owner_sets_up_through_the_link_and_owns_the_admin_key,
    the_session_cookie_is_host_only_http_only_secure_and_strict,
    sign_in_always_starts_a_new_session,
    unsafe_requests_need_the_origin_and_the_csrf_token,
    sign_out_ends_the_session_at_once_and_everywhere_ends_all,
    a_busy_session_still_ends_twelve_hours_after_sign_in,
    sign_in_does_not_tell_which_emails_exist_and_is_throttled,
    weak_passwords_are_refused,
    no_password_session_or_invitation_token_is_stored_in_plaintext,
);

async fn the_first_owner_sets_up_through_the_link_and_owns_the_admin_key(app: TestApp) {
    let owner = app.first_owner().await;
    let me = app
        .browse(
            Method::GET,
            "/v1/users/me",
            Some(&owner.cookie),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["method"], "session");
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["operator"], true);
    assert_eq!(me.body["csrf_token"], owner.csrf.as_str());
    // The admin key printed at first start now belongs to the first owner.
    let keys = app.get("/v1/keys").await;
    assert_eq!(keys.body["data"][0]["owner"]["id"], owner.user_id.as_str());
    assert_eq!(
        keys.body["data"][0]["owner"]["display_name"],
        "Olivia Owner"
    );
    // A key made with that management key is owned by its owner too, and made by no user.
    let (_, record) = app
        .create_key(json!({"name": "ci", "environment": "test"}))
        .await;
    assert_eq!(record["owner"]["id"], owner.user_id.as_str());
    assert_eq!(record["created_by"], json!(null));
    // The link works once.
    let again = app
        .try_accept(&app.setup_link, "eve@example.com", "Eve", PASSWORD)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "invitation_used");
    // Joining is audited with the user as the actor.
    let audit = app.audit().await;
    let joined = audit
        .iter()
        .find(|record| record["action"] == "member_added")
        .expect("member_added");
    assert_eq!(joined["actor_user_id"], owner.user_id.as_str());
    assert_eq!(joined["target_user_id"], owner.user_id.as_str());
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);
}

async fn the_session_cookie_is_host_only_http_only_secure_and_strict(app: TestApp) {
    app.first_owner().await;
    let reply = app.try_sign_in("owner@example.com", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let header = reply.headers["set-cookie"].to_str().expect("ascii");
    assert!(header.starts_with("__Host-keyplane_session="), "{header}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    assert!(!header.contains("Domain"), "{header}");
    assert_eq!(reply.headers["cache-control"], "no-store");
    // The cookie's value is not in the body, and the CSRF token is not the cookie.
    let value = cookie_of(&reply)
        .split_once('=')
        .expect("value")
        .1
        .to_owned();
    assert!(!reply.body.to_string().contains(&value));
}

async fn sign_in_always_starts_a_new_session(app: TestApp) {
    let owner = app.first_owner().await;
    // An attacker plants a session id of theirs (here: the owner's own old one) before sign-in.
    let reply = app
        .browse(
            Method::POST,
            "/v1/sessions",
            Some(&owner.cookie),
            None,
            None,
            Some(json!({"email": "owner@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let fresh = cookie_of(&reply);
    assert_ne!(fresh, owner.cookie, "a new session id after sign-in");
    let old = app
        .browse(
            Method::GET,
            "/v1/keys",
            Some(&owner.cookie),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.code(), "invalid_session");
    let new = app
        .browse(Method::GET, "/v1/keys", Some(&fresh), None, None, None)
        .await;
    assert_eq!(new.status, StatusCode::OK);
}

async fn unsafe_requests_need_the_origin_and_the_csrf_token(app: TestApp) {
    let owner = app.first_owner().await;
    let body = || Some(json!({"name": "from the page", "environment": "test"}));
    let same_origin = format!("https://{HOST}");
    // A cross-site form or fetch: the browser sends the cookie, but not our CSRF token, and
    // its own Origin.
    for (origin, csrf) in [
        (Some("https://evil.example"), Some(owner.csrf.as_str())),
        (Some(same_origin.as_str()), None),
        (Some(same_origin.as_str()), Some("forged")),
        (None, Some(owner.csrf.as_str())),
    ] {
        let reply = app
            .browse(
                Method::POST,
                "/v1/keys",
                Some(&owner.cookie),
                origin,
                csrf,
                body(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin:?} {csrf:?}");
        assert_eq!(reply.code(), "csrf_failed");
    }
    assert_eq!(
        app.get("/v1/keys").await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let made = app
        .as_browser(&owner, Method::POST, "/v1/keys", body())
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(
        made.body["record"]["created_by"]["id"],
        owner.user_id.as_str()
    );
    // Safe methods need no token.
    let read = app
        .browse(
            Method::GET,
            "/v1/keys",
            Some(&owner.cookie),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
}

async fn sign_out_ends_the_session_at_once_and_everywhere_ends_all(app: TestApp) {
    let owner = app.first_owner().await;
    let second = app.try_sign_in("owner@example.com", PASSWORD).await;
    let second = Browser {
        cookie: cookie_of(&second),
        csrf: second.body["csrf_token"].as_str().expect("csrf").to_owned(),
        user_id: owner.user_id.clone(),
    };
    let listed = app
        .as_browser(&owner, Method::GET, "/v1/sessions", None)
        .await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2));
    let out = app
        .as_browser(&owner, Method::DELETE, "/v1/sessions/current", None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    let after = app.as_browser(&owner, Method::GET, "/v1/keys", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.as_browser(&second, Method::GET, "/v1/keys", None)
            .await
            .status,
        StatusCode::OK
    );
    // Sign out everywhere.
    let third = app.try_sign_in("owner@example.com", PASSWORD).await;
    let third_cookie = cookie_of(&third);
    let all = app
        .as_browser(&second, Method::DELETE, "/v1/sessions", None)
        .await;
    assert_eq!(all.status, StatusCode::NO_CONTENT);
    for cookie in [&second.cookie, &third_cookie] {
        let reply = app
            .browse(Method::GET, "/v1/keys", Some(cookie), None, None, None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Idle expiry: a new session unused for 31 minutes is over.
    let idle = cookie_of(&app.try_sign_in("owner@example.com", PASSWORD).await);
    app.clock.advance_secs(31 * 60);
    let reply = app
        .browse(Method::GET, "/v1/keys", Some(&idle), None, None, None)
        .await;
    assert_eq!(reply.code(), "invalid_session");
}

async fn sign_in_does_not_tell_which_emails_exist_and_is_throttled(app: TestApp) {
    app.first_owner().await;
    let wrong = app
        .try_sign_in("owner@example.com", "not the password at all")
        .await;
    let unknown = app
        .try_sign_in("nobody@example.com", "not the password at all")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"]["code"], unknown.body["error"]["code"]);
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
    // Five attempts per email at once; the sixth waits, account or not.
    for email in ["owner@example.com", "nobody@example.com"] {
        for _ in 0..4 {
            app.try_sign_in(email, "not the password at all").await;
        }
        let throttled = app.try_sign_in(email, PASSWORD).await;
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert_eq!(throttled.code(), "too_many_attempts");
        let wait: u64 = throttled.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=12).contains(&wait), "{wait}");
    }
    app.clock.advance_secs(60);
    assert_eq!(
        app.try_sign_in("owner@example.com", PASSWORD).await.status,
        StatusCode::CREATED
    );
}

async fn weak_passwords_are_refused(app: TestApp) {
    for (password, why) in [("short", "12"), ("1qaz2wsx3edc", "common")] {
        let reply = app
            .try_accept(&app.setup_link, "o@example.com", "O", password)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{password}");
        assert_eq!(reply.code(), "weak_password");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .expect("message")
                .contains(why)
        );
    }
    // Nothing was used up: the link still works.
    app.first_owner().await;
}

async fn no_password_session_or_invitation_token_is_stored_in_plaintext(app: TestApp) {
    let owner = app.first_owner().await;
    let invited = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/invitations",
            Some(json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
    let link = invited.body["link"].as_str().expect("link").to_owned();
    let secrets = [
        PASSWORD.to_owned(),
        owner.cookie.split_once('=').expect("value").1.to_owned(),
        token_of(&app.setup_link).to_owned(),
        token_of(&link).to_owned(),
        owner.csrf.clone(),
    ];
    let dump = app
        .stored_text(&[
            "users",
            "sessions",
            "invitations",
            "memberships",
            "audit_log",
        ])
        .await;
    assert!(
        dump.contains("$argon2id$"),
        "the password is stored as its Argon2id hash"
    );
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "a secret is stored in plaintext"
        );
    }
}

async fn a_busy_session_still_ends_twelve_hours_after_sign_in(app: TestApp) {
    let owner = app.first_owner().await;
    // A request every 20 minutes keeps the idle clock from running out...
    for _ in 0..35 {
        app.clock.advance_secs(20 * 60);
        let reply = app
            .browse(
                Method::GET,
                "/v1/keys",
                Some(&owner.cookie),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // ...but not the absolute one: 12 h after sign-in the session is over.
    app.clock.advance_secs(20 * 60);
    let reply = app
        .browse(
            Method::GET,
            "/v1/keys",
            Some(&owner.cookie),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "invalid_session");
}
