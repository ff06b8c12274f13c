//! Host-product tokens through the API: a host product's signed-in user calls Keyplane with
//! `Authorization: Bearer <JWT>`; refused tokens get 401 `invalid_token`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyplane_control_plane::Config;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::{Reply, T0, TestApp};

backends!(
    config = trust_a_host_product;
    a_host_users_token_acts_for_them_in_a_provisioned_organization,
    a_token_naming_a_known_organization_joins_it_with_its_role,
    refused_tokens_get_invalid_token,
    a_host_token_becomes_a_partitioned_portal_session,
    an_unknown_organization_is_refused_without_provisioning,
);

pub(crate) const ISSUER: &str = "https://app.example.com";
/// A second host product, without provisioning.
const OTHER_ISSUER: &str = "https://other.example.com";

pub(crate) fn fixture(name: &str) -> String {
    format!(
        "{}/src/host_token/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// An ES256 host product whose tokens may name new organizations.
pub(crate) fn trust_a_host_product(config: &mut Config) {
    let path = config.data_dir.join("host-tokens.json");
    let file = json!({"issuers": [{
        "issuer": ISSUER,
        "audience": "keyplane",
        "algorithm": "ES256",
        "public_keys": [{"kid": "k1", "pem_file": fixture("es256-1.pub.pem")}],
        "provision_organizations": true,
    }, {
        "issuer": OTHER_ISSUER,
        "audience": "keyplane",
        "algorithm": "ES256",
        "public_keys": [{"pem_file": fixture("es256-2.pub.pem")}],
    }]});
    std::fs::write(&path, file.to_string()).expect("config written");
    config.people.host_tokens = Some(path);
}

fn claims(org: &str, role: &str) -> Value {
    let now = T0.as_millis() / 1000;
    json!({
        "iss": ISSUER, "aud": "keyplane", "sub": "user-42", "name": "Hana Host",
        "email": "hana@app.example.com", "org": org, "role": role,
        "iat": now, "exp": now + 600,
    })
}

fn token(claims: &Value) -> String {
    let key =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-1.key.pem")).expect("fixture"))
            .expect("key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, claims, &key).expect("signs")
}

async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    app.send(request).await
}

async fn a_host_users_token_acts_for_them_in_a_provisioned_organization(app: TestApp) {
    let token = token(&claims("acme-corp", "admin"));
    let me = with_token(&app, Method::GET, "/v1/users/me", &token, None).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["method"], "host_token");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["user"]["display_name"], "Hana Host");
    let org = me.body["organization_id"].as_str().expect("org").to_owned();
    let first = app.get("/v1/users/me").await.body["organization_id"].clone();
    assert_ne!(json!(org), first, "a new organization for acme-corp");
    // The same host organization maps to the same Keyplane one next time.
    let again = with_token(&app, Method::GET, "/v1/users/me", &token, None).await;
    assert_eq!(again.body["organization_id"], org.as_str());
    let made = with_token(
        &app,
        Method::POST,
        "/v1/keys",
        &token,
        Some(json!({"name": "Hana's key", "environment": "test"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(
        made.body["record"]["created_by"]["display_name"],
        "Hana Host"
    );
    // The first organization's admin key sees none of it.
    let id = made.body["record"]["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/v1/keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // An owner of a provisioned organization is no operator of the deployment.
    let owner = self::token(&claims("acme-corp", "owner"));
    let operator = with_token(
        &app,
        Method::GET,
        "/v1/operator/organizations",
        &owner,
        None,
    )
    .await;
    assert_eq!(operator.status, StatusCode::FORBIDDEN);
    // The first organization's admin:full key is: it sees both organizations.
    let all = app.get("/v1/operator/organizations").await;
    assert_eq!(
        all.body["data"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        all.body
    );
    let members = with_token(&app, Method::GET, "/v1/members", &token, None).await;
    assert_eq!(members.body["data"][0]["role"], "admin");
    // Methods are listed without key material.
    let config = app.call(Method::GET, "/v1/auth/config", None, None).await;
    assert_eq!(config.body["host_tokens"][0]["issuer"], ISSUER);
    assert_eq!(config.body["host_tokens"][0]["algorithm"], "ES256");
    assert!(!config.body.to_string().contains("BEGIN"));
}

async fn a_token_naming_a_known_organization_joins_it_with_its_role(app: TestApp) {
    let org = app.get("/v1/users/me").await.body["organization_id"]
        .as_str()
        .expect("org")
        .to_owned();
    let token = token(&claims(&org, "viewer"));
    let read = with_token(&app, Method::GET, "/v1/keys", &token, None).await;
    assert_eq!(read.status, StatusCode::OK);
    let write = with_token(
        &app,
        Method::POST,
        "/v1/keys",
        &token,
        Some(json!({"name": "no", "environment": "test"})),
    )
    .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.code(), "forbidden");
    let audit = app.audit().await;
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "member_added" && r["details"]["source"] == "host_token")
    );
}

async fn refused_tokens_get_invalid_token(app: TestApp) {
    let now = T0.as_millis() / 1000;
    let mut expired = claims("acme-corp", "admin");
    expired["exp"] = json!(now - 3600);
    let mut audience = claims("acme-corp", "admin");
    audience["aud"] = json!("someone-else");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("acme-corp", "owner").to_string())
    );
    let other_key = {
        let key =
            EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-2.key.pem")).expect("fixture"))
                .expect("key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims("acme-corp", "owner"), &key).expect("signs")
    };
    // Text the database could not store (PostgreSQL text holds no NUL): refused as a claim,
    // before anything is looked up or provisioned, rather than failing there with a 500.
    let mut nul_name = claims("acme-corp", "admin");
    nul_name["name"] = json!("Ann\u{0}");
    let mut nul_org = claims("acme\u{0}corp", "admin");
    nul_org["sub"] = json!("user-7");
    for (what, token) in [
        ("a NUL in the name", token(&nul_name)),
        ("a NUL in the organization", token(&nul_org)),
        ("expired", token(&expired)),
        ("wrong audience", token(&audience)),
        ("alg none", unsigned),
        ("another key", other_key),
    ] {
        let reply = with_token(&app, Method::GET, "/v1/keys", &token, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.code(), "invalid_token", "{what}");
    }
    // Nothing was provisioned by the refused tokens.
    let count = sqlx::query("SELECT COUNT(*) FROM orgs")
        .fetch_one(app.pool())
        .await
        .expect("count");
    use sqlx::Row as _;
    assert_eq!(count.get::<i64, _>(0), 1);
}

async fn a_host_token_becomes_a_partitioned_portal_session(app: TestApp) {
    let token = token(&claims("acme-corp", "developer"));
    let reply = with_token(&app, Method::POST, "/v1/sessions/portal", &token, None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let header = reply.headers["set-cookie"].to_str().expect("ascii");
    assert!(header.starts_with("__Host-keyplane_portal="), "{header}");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Partitioned",
        "Path=/",
    ] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    let cookie = header.split(';').next().expect("name=value").to_owned();
    let csrf = reply.body["csrf_token"].as_str().expect("csrf").to_owned();
    let me = app
        .browse(Method::GET, "/v1/users/me", Some(&cookie), None, None, None)
        .await;
    assert_eq!(me.body["method"], "session");
    assert_eq!(me.body["role"], "developer");
    // In the frame, unsafe calls rely on the CSRF token (and the frame's own origin).
    let origin = format!("https://{}", crate::helpers::people::HOST);
    let without = app
        .browse(
            Method::POST,
            "/v1/keys",
            Some(&cookie),
            Some(&origin),
            None,
            Some(json!({"name": "portal", "environment": "test"})),
        )
        .await;
    assert_eq!(without.code(), "csrf_failed");
    let with = app
        .browse(
            Method::POST,
            "/v1/keys",
            Some(&cookie),
            Some(&origin),
            Some(&csrf),
            Some(json!({"name": "portal", "environment": "test"})),
        )
        .await;
    assert_eq!(with.status, StatusCode::CREATED, "{:?}", with.body);
    // A management key cannot be exchanged.
    let by_key = app.post("/v1/sessions/portal", json!({})).await;
    assert_eq!(by_key.status, StatusCode::FORBIDDEN);
    // Nor a token whose own access is narrower than the member's role, which the session
    // would act with: a permissions claim, which syncs its member as a developer.
    let mut narrow = claims("acme-corp", "developer");
    narrow["role"] = Value::Null;
    narrow["permissions"] = json!(["contacts:read"]);
    let narrow = self::token(&narrow);
    let direct = with_token(&app, Method::GET, "/v1/keys", &narrow, None).await;
    assert_eq!(direct.status, StatusCode::OK, "the token itself works");
    let widened = with_token(&app, Method::POST, "/v1/sessions/portal", &narrow, None).await;
    assert_eq!(widened.status, StatusCode::FORBIDDEN, "{:?}", widened.body);
}

async fn an_unknown_organization_is_refused_without_provisioning(app: TestApp) {
    let key =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-2.key.pem")).expect("fixture"))
            .expect("key");
    let mut claims = claims("unknown-co", "admin");
    claims["iss"] = json!(OTHER_ISSUER);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("signs");
    let reply = with_token(&app, Method::GET, "/v1/keys", &token, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "invalid_token");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("unknown_organization")
    );
    // The same issuer may act in an organization that exists.
    let org = app.get("/v1/users/me").await.body["organization_id"]
        .as_str()
        .expect("org")
        .to_owned();
    claims["org"] = json!(org);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("signs");
    assert_eq!(
        with_token(&app, Method::GET, "/v1/keys", &token, None)
            .await
            .status,
        StatusCode::OK
    );
    // A token of one issuer signed with the other's key is refused.
    claims["iss"] = json!(ISSUER);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("signs");
    assert_eq!(
        with_token(&app, Method::GET, "/v1/keys", &token, None)
            .await
            .code(),
        "invalid_token"
    );
}
