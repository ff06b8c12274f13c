//! The embedded portal through the API: one-time links asked for by a host product's back end
//! or a management key, entering with them (once, within five minutes), the portal session's
//! role (the organization's branding: `portal_branding`).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyplane_control_plane::Config;
use keyplane_control_plane::accounts::tokens;
use keyplane_control_plane::auth::Anonymous;
use keyplane_control_plane::error::ApiError;
use keyplane_control_plane::portal::{self, PortalEntry};
use keyplane_control_plane::store::AuditContext;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backends;
use crate::helpers::people::{Browser, token_of};
use crate::helpers::{Reply, T0, TestApp};
use crate::host_tokens::{ISSUER, fixture};

backends!(
    config = trust_a_host_product;
    a_host_products_back_end_gets_links_for_two_of_its_organizations,
    a_token_confined_to_one_organization_gets_links_there_only,
    a_management_key_gets_links_for_its_own_members_only,
    a_link_works_once_and_for_five_minutes,
    a_portal_session_is_partitioned_remembers_its_return_url_and_acts_with_its_role_only,
    a_links_token_is_stored_only_as_its_digest,
);

const RETURN_URL: &str = "https://app.example.com/settings/api";

/// The host products of the host-token tests (the first one provisions organizations).
fn trust_a_host_product(config: &mut Config) {
    crate::host_tokens::trust_a_host_product(config);
}

/// A token of the host product's back end, with `extra` claims.
fn backend_token(extra: Value) -> String {
    let now = T0.as_millis() / 1000;
    let mut claims = json!({
        "iss": ISSUER, "aud": "keyplane", "sub": "backend", "iat": now, "exp": now + 600,
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    let key =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-1.key.pem")).expect("fixture"))
            .expect("key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, &key).expect("signs")
}

async fn ask_with_token(app: &TestApp, token: &str, body: Value) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/portal/sessions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

fn host_user_link(org: &str, subject: &str, role: &str) -> Value {
    json!({
        "user": {"id": subject, "email": format!("{subject}@app.example.com"), "name": "Hana Host"},
        "organization": org,
        "role": role,
        "return_url": RETURN_URL,
    })
}

async fn enter(app: &TestApp, url: &str) -> Result<PortalEntry, ApiError> {
    let anonymous = Anonymous {
        context: AuditContext::default(),
        headers: HeaderMap::new(),
    };
    portal::enter(&app.state, token_of(url), &anonymous).await
}

/// Enters with `url` (which must work): the portal session as a browser.
async fn entered(app: &TestApp, url: &str) -> (Browser, PortalEntry) {
    let entry = enter(app, url).await.expect("the link works");
    let cookie = entry
        .set_cookie
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let browser = Browser {
        cookie,
        csrf: entry.csrf_token.clone(),
        user_id: entry.user.to_string(),
    };
    (browser, entry)
}

fn url_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["url"].as_str().expect("url").to_owned()
}

async fn a_host_products_back_end_gets_links_for_two_of_its_organizations(app: TestApp) {
    let token = backend_token(json!({}));
    let acme = ask_with_token(
        &app,
        &token,
        host_user_link("acme-corp", "u-1", "developer"),
    )
    .await;
    let url = url_of(&acme);
    assert!(
        url.starts_with(&format!("{}/portal/enter#token=", app.state.public_url)),
        "{url}"
    );
    assert_eq!(acme.headers["cache-control"], "no-store");
    assert_eq!(acme.body["expires_at"], "2027-01-15T08:05:00.000Z");
    let globex = ask_with_token(&app, &token, host_user_link("globex", "u-1", "viewer")).await;
    let other_url = url_of(&globex);

    let (acme_session, acme_entry) = entered(&app, &url).await;
    let (globex_session, globex_entry) = entered(&app, &other_url).await;
    assert_ne!(acme_entry.org, globex_entry.org, "two organizations");
    assert_eq!(acme_entry.user, globex_entry.user, "one host user");
    assert_ne!(acme_entry.org.to_string(), app.first_org().await);
    for (browser, entry, role) in [
        (&acme_session, &acme_entry, "developer"),
        (&globex_session, &globex_entry, "viewer"),
    ] {
        let me = app
            .browse(
                Method::GET,
                "/v1/users/me",
                Some(&browser.cookie),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        assert_eq!(me.body["organization_id"], entry.org.to_string());
        assert_eq!(me.body["role"], role);
        assert_eq!(me.body["user"]["display_name"], "Hana Host");
        let audit = app
            .browse(
                Method::GET,
                "/v1/audit?action=portal_link_created",
                Some(&browser.cookie),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
        let records = audit.body["data"].as_array().expect("data");
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["target_user_id"], entry.user.to_string());
        assert_eq!(records[0]["details"]["role"], role);
        assert_eq!(records[0]["details"]["return_url"], RETURN_URL);
    }
    // The same host organization is the same Keyplane one next time.
    let again = ask_with_token(&app, &token, host_user_link("acme-corp", "u-2", "viewer")).await;
    let (_, entry) = entered(&app, &url_of(&again)).await;
    assert_eq!(entry.org, acme_entry.org);
    // Required fields and the return URL's scheme are checked.
    let mut no_user = host_user_link("acme-corp", "u-1", "viewer");
    no_user["user"] = json!({"email": "x@example.com"});
    let mut no_role = host_user_link("acme-corp", "u-1", "viewer");
    no_role["role"] = Value::Null;
    let mut javascript = host_user_link("acme-corp", "u-1", "viewer");
    javascript["return_url"] = json!("javascript:alert(1)");
    let mut unknown_field = host_user_link("acme-corp", "u-1", "viewer");
    unknown_field["scopes"] = json!(["admin:full"]);
    let mut unknown_role = host_user_link("acme-corp", "u-1", "viewer");
    unknown_role["role"] = json!("wizard");
    for body in [no_user, no_role, javascript, unknown_field, unknown_role] {
        let refused = ask_with_token(&app, &token, body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // A forged token is refused.
    let forged = format!("{}x", backend_token(json!({})));
    let refused = ask_with_token(&app, &forged, host_user_link("acme-corp", "u-1", "viewer")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "invalid_token");
}

async fn a_token_confined_to_one_organization_gets_links_there_only(app: TestApp) {
    // A token naming an organization, with the role of an admin there.
    let token = backend_token(json!({"org": "acme-corp", "role": "admin"}));
    let here = ask_with_token(
        &app,
        &token,
        host_user_link("acme-corp", "u-1", "developer"),
    )
    .await;
    url_of(&here);
    let mut implied = host_user_link("acme-corp", "u-1", "developer");
    implied["organization"] = Value::Null;
    url_of(&ask_with_token(&app, &token, implied).await);
    let elsewhere = ask_with_token(&app, &token, host_user_link("globex", "u-1", "viewer")).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        elsewhere.body
    );
    // An admin's token cannot make an owner.
    let owner = ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "owner")).await;
    assert_eq!(owner.status, StatusCode::FORBIDDEN, "{:?}", owner.body);
    // A developer's token cannot make an admin; and since a developer does not manage
    // members, it asks for its own link only: another person's would act as them (their
    // keys) and set their role.
    let developer = backend_token(json!({"org": "acme-corp", "role": "developer"}));
    let admin = ask_with_token(
        &app,
        &developer,
        host_user_link("acme-corp", "u-3", "admin"),
    )
    .await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "{:?}", admin.body);
    let someone_else = ask_with_token(
        &app,
        &developer,
        host_user_link("acme-corp", "u-3", "viewer"),
    )
    .await;
    assert_eq!(
        someone_else.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        someone_else.body
    );
    // Its subject is `backend`: its own link, with a role within its reach.
    let own = ask_with_token(
        &app,
        &developer,
        host_user_link("acme-corp", "backend", "viewer"),
    )
    .await;
    url_of(&own);
    // An admin's token manages members, but not owners: it cannot take an owner's link (nor
    // so demote them), and the owner stays an owner.
    let issuer_back_end = backend_token(json!({"org": "acme-corp"}));
    let (_, boss) = entered(
        &app,
        &url_of(
            &ask_with_token(
                &app,
                &issuer_back_end,
                host_user_link("acme-corp", "boss", "owner"),
            )
            .await,
        ),
    )
    .await;
    let demoted = ask_with_token(&app, &token, host_user_link("acme-corp", "boss", "viewer")).await;
    assert_eq!(demoted.status, StatusCode::FORBIDDEN, "{:?}", demoted.body);
    let still = app
        .store
        .member(boss.org, boss.user)
        .await
        .expect("read")
        .expect("a member");
    assert_eq!(still.role.as_str(), "owner");
}

async fn a_management_key_gets_links_for_its_own_members_only(app: TestApp) {
    let owner = app.first_owner().await;
    let developer = app
        .member(&owner, "dev@example.com", "Dan Dev", "developer")
        .await;
    let org = app.first_org().await;
    // By id, in its own organization (named or not), and by email.
    let by_id = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": developer.user_id}, "organization": org, "return_url": RETURN_URL}),
        )
        .await;
    let (_, entry) = entered(&app, &url_of(&by_id)).await;
    assert_eq!(entry.org.to_string(), org);
    assert_eq!(entry.user.to_string(), developer.user_id);
    let by_email = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"email": "DEV@example.com"}, "role": "developer", "return_url": RETURN_URL}),
        )
        .await;
    url_of(&by_email);
    // Another organization (one a host product made) is refused.
    let token = backend_token(json!({}));
    let acme = ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await;
    let (_, acme_entry) = entered(&app, &url_of(&acme)).await;
    for organization in [acme_entry.org.to_string(), "acme-corp".to_owned()] {
        let refused = app
            .post(
                "/v1/portal/sessions",
                json!({"user": {"id": developer.user_id}, "organization": organization, "return_url": RETURN_URL}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    }
    // Nor can it reach that organization's member.
    let stranger = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": acme_entry.user.to_string()}, "return_url": RETURN_URL}),
        )
        .await;
    assert_eq!(
        stranger.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        stranger.body
    );
    // A key without admin rights mints no owner portal, nor a developer one beyond its scopes,
    // nor changes a member's role; a viewer portal for a viewer it may.
    let (limited, _) = app
        .create_key(json!({"name": "portal", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    let ask = |body: Value| {
        let limited = limited.clone();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/portal/sessions",
                Some(&limited),
                Some(body),
            )
            .await
        }
    };
    let as_owner = ask(json!({"user": {"id": owner.user_id}, "return_url": RETURN_URL})).await;
    assert_eq!(
        as_owner.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        as_owner.body
    );
    let as_developer =
        ask(json!({"user": {"id": developer.user_id}, "return_url": RETURN_URL})).await;
    assert_eq!(as_developer.status, StatusCode::FORBIDDEN);
    let demoted =
        ask(json!({"user": {"id": developer.user_id}, "role": "viewer", "return_url": RETURN_URL}))
            .await;
    assert_eq!(demoted.status, StatusCode::FORBIDDEN, "{:?}", demoted.body);
    let viewer = app
        .member(&owner, "vic@example.com", "Vic Viewer", "viewer")
        .await;
    url_of(&ask(json!({"user": {"id": viewer.user_id}, "return_url": RETURN_URL})).await);
    // A signed-in owner's session is no back end.
    let by_session = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/portal/sessions",
            Some(json!({"user": {"id": developer.user_id}, "return_url": RETURN_URL})),
        )
        .await;
    assert_eq!(by_session.status, StatusCode::FORBIDDEN);
}

async fn a_link_works_once_and_for_five_minutes(app: TestApp) {
    let token = backend_token(json!({}));
    let url =
        url_of(&ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await);
    entered(&app, &url).await;
    let again = enter(&app, &url).await.expect_err("used");
    assert!(matches!(again, ApiError::InvalidPortalLink), "{again:?}");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(again.code(), "invalid_portal_link");

    let late =
        url_of(&ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await);
    let in_time =
        url_of(&ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await);
    app.clock.advance_secs(4 * 60 + 59);
    entered(&app, &in_time).await;
    app.clock.advance_secs(1);
    let expired = enter(&app, &late).await.expect_err("expired");
    assert!(
        matches!(expired, ApiError::InvalidPortalLink),
        "{expired:?}"
    );
    let unknown = enter(&app, "https://x/portal/enter#token=not-a-token")
        .await
        .expect_err("unknown");
    assert!(
        matches!(unknown, ApiError::InvalidPortalLink),
        "{unknown:?}"
    );
}

async fn a_portal_session_is_partitioned_remembers_its_return_url_and_acts_with_its_role_only(
    app: TestApp,
) {
    let token = backend_token(json!({}));
    let url =
        url_of(&ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await);
    let (viewer, entry) = entered(&app, &url).await;
    let header = entry.set_cookie.to_str().expect("ascii");
    assert!(header.starts_with("__Host-keyplane_portal="), "{header}");
    for attribute in [
        "SameSite=None",
        "Secure",
        "Partitioned",
        "HttpOnly",
        "Path=/",
    ] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    assert_eq!(entry.return_url, RETURN_URL);
    let value = viewer.cookie.split_once('=').expect("value").1;
    let (session, _) = app
        .store
        .session_by_token(&tokens::digest(value))
        .await
        .expect("store")
        .expect("the session");
    assert_eq!(session.return_url.as_deref(), Some(RETURN_URL));
    assert_eq!(session.id, entry.session);
    // A viewer reads, and creates no key even with the CSRF token.
    let list = app.as_browser(&viewer, Method::GET, "/v1/keys", None).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let create = app
        .as_browser(
            &viewer,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "nope", "environment": "test"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN, "{:?}", create.body);
    // The same user with a developer link does.
    let url = url_of(
        &ask_with_token(
            &app,
            &token,
            host_user_link("acme-corp", "u-1", "developer"),
        )
        .await,
    );
    let (developer, _) = entered(&app, &url).await;
    let create = app
        .as_browser(
            &developer,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "mine", "environment": "test"})),
        )
        .await;
    assert_eq!(create.status, StatusCode::CREATED, "{:?}", create.body);
}

async fn a_links_token_is_stored_only_as_its_digest(app: TestApp) {
    let token = backend_token(json!({}));
    let url =
        url_of(&ask_with_token(&app, &token, host_user_link("acme-corp", "u-1", "viewer")).await);
    let secret = token_of(&url);
    let rows = sqlx::query("SELECT token_digest, return_url, used_at FROM portal_links")
        .fetch_all(app.pool())
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let digest: Vec<u8> = rows[0].get("token_digest");
    assert_eq!(digest, tokens::digest(secret).to_vec());
    assert_ne!(digest, secret.as_bytes());
    assert_eq!(rows[0].get::<String, _>("return_url"), RETURN_URL);
    assert_eq!(rows[0].get::<Option<i64>, _>("used_at"), None);
    entered(&app, &url).await;
    let used: Option<i64> = sqlx::query("SELECT used_at FROM portal_links")
        .fetch_one(app.pool())
        .await
        .expect("row")
        .get("used_at");
    assert_eq!(used, Some(T0.as_millis()));
}
