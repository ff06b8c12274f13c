//! What the OpenAPI document promises, the server keeps: the deployment's own rules are in the
//! served document, every operation names what authentication and the database may answer
//! (a session's unsafe request its `csrf_failed`, and a person's change of the organization its
//! `role_changed`), every reading it opens to a session answers one, and the server takes what
//! the document calls valid (whole numbers written `30.0`, an id's shape that names nothing,
//! lists counted as sent) and refuses with a 400, never a 500, what no database can be asked (a
//! NUL in a filter or an email).

use axum::http::{Method, StatusCode};
use keyplane_control_plane::Config;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;

backends!(
    every_operation_names_what_authentication_and_the_database_may_answer,
    whole_numbers_written_with_a_fraction_are_taken,
    lists_are_counted_as_sent,
    an_id_shape_or_an_owner_that_names_nobody_filters_to_an_empty_page,
    text_no_database_holds_is_refused_or_matches_nothing_never_a_500,
    every_reading_the_document_opens_to_a_session_answers_a_signed_in_owner,
);

mod own_rules {
    use super::*;
    backends!(
        config = production_with_own_rules;
        the_document_states_this_deployments_rules,
    );
}

/// A deployment with its own prefix and ceiling, outside local development.
fn production_with_own_rules(config: &mut Config) {
    config.key_prefix = "acme".parse().expect("a prefix");
    config.max_rate_limit = "500/min,burst=50".parse().expect("a ceiling");
    config.local_dev = false;
}

async fn document(app: &TestApp) -> Value {
    app.call(Method::GET, "/openapi.json", None, None)
        .await
        .body
}

fn pattern<'a>(document: &'a Value, format: &str) -> &'a str {
    document["components"]["schemas"][format]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{format} has a pattern"))
}

async fn the_document_states_this_deployments_rules(app: TestApp) {
    let document = document(&app).await;
    let limit = &document["components"]["schemas"]["RateLimitBody"]["properties"];
    assert_eq!(limit["requests_per_minute"]["maximum"], 500);
    assert_eq!(limit["burst"]["maximum"], 50);
    assert!(pattern(&document, "FullKey").starts_with("^acme_(?:live|test)_"));
    // Outside local development, `https://` only, and webhooks to public names.
    for format in ["WebUrl", "HttpsUrl", "WebhookUrl", "Origin"] {
        assert!(
            pattern(&document, format).starts_with("^https://"),
            "{format}"
        );
    }
    // The ceiling the document states is the one the server keeps.
    let over = app
        .post(
            "/v1/keys",
            json!({"name": "k", "environment": "live",
                   "rate_limit": {"requests_per_minute": 501, "burst": 50}}),
        )
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{:?}", over.body);
    let (key, _) = app
        .create_key(json!({"name": "k", "environment": "live",
                           "rate_limit": {"requests_per_minute": 500, "burst": 50}}))
        .await;
    assert!(key.starts_with("acme_live_"));
}

async fn every_operation_names_what_authentication_and_the_database_may_answer(app: TestApp) {
    let document = document(&app).await;
    // Under local development (the tests'), `http://` is taken too, and any webhook host.
    assert!(pattern(&document, "WebUrl").starts_with("^https?://"));
    assert!(pattern(&document, "HttpsUrl").starts_with("^https://"));
    assert_eq!(
        pattern(&document, "WebhookUrl"),
        pattern(&document, "WebUrl")
    );
    let paths = document["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            let label = format!("{} {path}", method.to_uppercase());
            let statuses = operation["responses"].as_object().expect("responses");
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|requirement| requirement.keys().map(String::as_str))
                .collect();
            let names = |status: &str| statuses.contains_key(status);
            if schemes.contains(&"api_key") || schemes.contains(&"bearer") {
                for status in ["401", "403", "503"] {
                    assert!(names(status), "{label} names {status}");
                }
            }
            if schemes.contains(&"session") && method != "get" {
                let forbidden = statuses["403"]["description"].as_str().unwrap_or_default();
                assert!(
                    forbidden.contains("`csrf_failed`"),
                    "{label} names 403 `csrf_failed`: {forbidden:?}"
                );
            }
            // A person's change of the organization: their role is checked again under its
            // lock. Nothing else answers `role_changed`.
            let conflict = statuses
                .get("409")
                .and_then(|conflict| conflict["description"].as_str())
                .unwrap_or_default();
            let changes_the_organization =
                schemes.contains(&"session") && schemes.contains(&"api_key") && method != "get";
            assert_eq!(
                conflict.contains("`role_changed`"),
                changes_the_organization,
                "{label}: 409 {conflict:?}"
            );
            if !schemes.is_empty() {
                assert!(names("503"), "{label} names 503");
            }
            if operation["requestBody"]["content"]["application/json"].is_object() {
                for status in ["400", "413", "415"] {
                    assert!(names(status), "{label} names {status}");
                }
            }
        }
    }
    // A management key may not change a password: the 403 the document names.
    let password = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(&app.admin_key),
            Some(json!({"current_password": "a", "new_password": "b"})),
        )
        .await;
    assert_eq!(password.status, StatusCode::FORBIDDEN);
    // The attempts listing's limit and cursor are query parameters, as the handler reads them.
    let attempts = &document["paths"]["/v1/webhooks/{id}/attempts"]["get"]["parameters"];
    for parameter in attempts.as_array().expect("parameters") {
        let expected = if parameter["name"] == "id" {
            "path"
        } else {
            "query"
        };
        assert_eq!(parameter["in"], expected, "{parameter}");
    }
}

async fn every_reading_the_document_opens_to_a_session_answers_a_signed_in_owner(app: TestApp) {
    let document = document(&app).await;
    let owner = app.first_owner().await;
    let (_, key) = app
        .create_key(json!({"name": "read", "environment": "live"}))
        .await;
    let key_id = key["id"].as_str().expect("an id");
    let mut read = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        let Some(operation) = operations.get("get") else {
            continue;
        };
        let takes_session = operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|requirement| requirement.get("session").is_some());
        let path = path.replace("/v1/keys/{id}", &format!("/v1/keys/{key_id}"));
        if !takes_session || path.contains('{') {
            continue;
        }
        let reply = app.as_browser(&owner, Method::GET, &path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {:?}", reply.body);
        read += 1;
    }
    // The keys, one key and its usage, the audit log, members, roles, webhooks and the rest.
    assert!(read >= 15, "only {read} readings");
}

async fn whole_numbers_written_with_a_fraction_are_taken(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live",
                           "rate_limit": {"requests_per_minute": 100.0, "burst": 1e1}}))
        .await;
    assert_eq!(
        record["rate_limit"],
        json!({"requests_per_minute": 100, "burst": 10})
    );
    let id = record["id"].as_str().expect("id");
    let rotated = app
        .post(
            &format!("/v1/keys/{id}/rotate"),
            json!({"grace_seconds": 60.0}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let notices = app
        .call(
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(&app.admin_key),
            Some(json!({"days_before": [7.0, 1]})),
        )
        .await;
    assert_eq!(notices.status, StatusCode::OK, "{:?}", notices.body);
    assert_eq!(notices.body["days_before"], json!([7, 1]));
    // A fraction is still no whole number.
    let successor = rotated.body["record"]["id"].as_str().expect("id");
    let fraction = app
        .post(
            &format!("/v1/keys/{successor}/rotate"),
            json!({"grace_seconds": 60.5}),
        )
        .await;
    assert_eq!(fraction.status, StatusCode::BAD_REQUEST);
    assert_eq!(fraction.code(), "invalid_json");
}

async fn lists_are_counted_as_sent(app: TestApp) {
    // At most 5 lead times and 64 scopes, as listed: repeats count (the document's `maxItems`).
    let six = app
        .call(
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(&app.admin_key),
            Some(json!({"days_before": [1, 1, 1, 1, 1, 1]})),
        )
        .await;
    assert_eq!(six.status, StatusCode::BAD_REQUEST);
    assert_eq!(six.code(), "invalid_request");
    let five = app
        .call(
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(&app.admin_key),
            Some(json!({"days_before": [1, 1, 1, 30, 30]})),
        )
        .await;
    assert_eq!(five.status, StatusCode::OK, "repeats are taken once");
    assert_eq!(five.body["days_before"], json!([30, 1]));
    let scopes = |count: usize| vec!["contacts:read"; count];
    let over = app
        .post(
            "/v1/keys",
            json!({"name": "k", "environment": "live", "scopes": scopes(65)}),
        )
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    let role = app
        .post("/v1/roles", json!({"name": "ops", "scopes": scopes(65)}))
        .await;
    assert_eq!(role.status, StatusCode::BAD_REQUEST);
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live", "scopes": scopes(64)}))
        .await;
    assert_eq!(record["scopes"], json!(["contacts:read"]));
}

async fn an_id_shape_or_an_owner_that_names_nobody_filters_to_an_empty_page(app: TestApp) {
    app.create_key(json!({"name": "k", "environment": "live"}))
        .await;
    // 22 base62 digits beyond 128 bits: the shape of an id, but none.
    let beyond = "z".repeat(22);
    let audit = app.get(&format!("/v1/audit?key_id=key_{beyond}")).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_eq!(audit.body, json!({"data": [], "next_cursor": null}));
    let owned = app.get(&format!("/v1/keys?owner=usr_{beyond}")).await;
    assert_eq!(owned.status, StatusCode::OK);
    assert_eq!(owned.body, json!({"data": [], "next_cursor": null}));
    // The first admin key has no owner before the first owner signs up: it owns nothing.
    let mine = app.get("/v1/keys?owner=me").await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["data"], json!([]));
    assert!(
        !app.get("/v1/keys").await.body["data"]
            .as_array()
            .expect("data")
            .is_empty()
    );
    // What has no id's shape is still refused, and other parameters still checked.
    for path in [
        "/v1/audit?key_id=key_short",
        "/v1/keys?owner=someone",
        &format!("/v1/audit?key_id=key_{beyond}&limit=0"),
    ] {
        assert_eq!(
            app.get(path).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
}

async fn text_no_database_holds_is_refused_or_matches_nothing_never_a_500(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    for path in [
        "/v1/keys?name=%00".to_owned(),
        "/v1/keys?last_used_ip=%00".to_owned(),
        "/v1/keys?last_used_ip=%C3%A9".to_owned(),
        "/v1/keys?last_used_ip_not=192.0.2.1,%00".to_owned(),
        format!("/v1/keys/{id}/usage?ip=%00"),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {:?}",
            reply.body
        );
    }
    // No account's email has a NUL: a sign-in with one is a wrong email, and a portal link
    // for one names no member.
    let sign_in = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "a\u{0}@example.com", "password": "whatever it is"})),
        )
        .await;
    assert_eq!(
        sign_in.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        sign_in.body
    );
    let portal = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"email": "a\u{0}@example.com"},
                   "return_url": "https://app.example.com/"}),
        )
        .await;
    assert_eq!(portal.status, StatusCode::NOT_FOUND, "{:?}", portal.body);
}
