//! No plaintext key in the database, in the logs, or in error messages.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use keyplane_control_plane::store::sql::Backend;
use serde_json::json;
use sqlx::Row as _;

use keyplane_shared::sync::hex;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    keys_never_reach_the_database_or_the_logs,
    passwords_and_session_and_invitation_tokens_never_reach_the_database_or_the_logs,
);

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn keys_never_reach_the_database_or_the_logs(app: TestApp) {
    let (captured, _guard) = capture();

    let mut keys = vec![app.admin_key.clone()];
    for env in ["live", "test"] {
        let (key, record) = app
            .create_key(json!({"name": format!("{env} key"), "environment": env, "scopes": ["api-keys:manage"]}))
            .await;
        let id = record["id"].as_str().expect("id").to_owned();
        keys.push(key.clone());
        // Use it, fail with it, rotate it: every path that touches a key.
        app.call(Method::GET, "/v1/keys", Some(&key), None).await;
        let mut wrong = key.clone();
        wrong.push('x');
        app.call(Method::GET, "/v1/keys", Some(&wrong), None).await;
        let rotated = app
            .post(
                &format!("/v1/keys/{id}/rotate"),
                json!({"grace_seconds": 60}),
            )
            .await;
        keys.push(rotated.body["key"].as_str().expect("successor").to_owned());
    }
    let revoked = app
        .post(
            "/v1/keys/key_0000000000000000000000/revoke",
            json!({"reason": "other"}),
        )
        .await;
    assert_eq!(revoked.status, 404);

    let stored = dump(&app).await;
    assert!(stored.len() > 1000, "the dump is not empty");
    drop(_guard);
    let logs =
        String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
    assert!(logs.contains("/v1/keys"), "the capture saw the requests");
    for key in &keys {
        let body = &key[key.len() - 38..];
        for (what, haystack) in [("database", &stored), ("logs", &logs)] {
            assert!(!haystack.contains(body), "a key's secret is in the {what}");
            assert!(
                !haystack.contains(&hex(body.as_bytes())),
                "a key's secret (hex) is in the {what}"
            );
        }
    }
    let _ = std::io::stderr().flush();
}

/// Everything the database holds, as text: the SQLite files (raw and hex), or every table's rows.
async fn dump(app: &TestApp) -> String {
    let mut stored = String::new();
    match app.backend {
        Backend::Sqlite => {
            sqlx::query("PRAGMA wal_checkpoint(FULL)")
                .execute(app.pool())
                .await
                .expect("checkpoint");
            for entry in std::fs::read_dir(app.data_dir.path()).expect("data dir") {
                let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
                stored.push_str(&String::from_utf8_lossy(&bytes));
                stored.push_str(&hex(&bytes));
            }
        }
        Backend::Postgres => {
            for table in [
                "orgs",
                "api_keys",
                "audit_log",
                "changes",
                "users",
                "sessions",
                "invitations",
                "memberships",
                "portal_links",
                "org_branding",
            ] {
                let sql = format!("SELECT t::text FROM {table} t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(app.pool())
                    .await
                    .expect("dump")
                {
                    stored.push_str(&row.get::<String, _>(0));
                }
            }
        }
    }
    stored
}

/// Captures what this thread logs until the guard is dropped.
///
/// `tracing` caches each callsite's interest for the whole process, computed on whichever
/// thread reaches it first: a sibling test's thread with no subscriber would cache "never" and
/// hide that event from this capture too (the test then failed now and then under the parallel
/// run, "the capture saw the requests"). So a global subscriber that takes every event and
/// keeps none is installed once: every thread then answers "always", and the cache is rebuilt
/// once this capture is in place.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    static EVERY_THREAD_INTERESTED: std::sync::Once = std::sync::Once::new();
    EVERY_THREAD_INTERESTED.call_once(|| {
        // Another global subscriber already there answers for every thread as well.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

async fn passwords_and_session_and_invitation_tokens_never_reach_the_database_or_the_logs(
    app: TestApp,
) {
    use crate::helpers::people::{PASSWORD, token_of};
    let (captured, guard) = capture();
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
    let developer = app.accept(&link, "dev@example.com", "Dan Dev").await;
    let new_password = "an entirely different passphrase";
    let changed = app
        .as_browser(
            &developer,
            Method::POST,
            "/v1/users/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    // A wrong password and a forged cookie go through the refusal paths too.
    app.browse(
        Method::POST,
        "/v1/sessions",
        None,
        None,
        None,
        Some(json!({"email": "dev@example.com", "password": "wrong but long enough"})),
    )
    .await;
    app.browse(
        Method::GET,
        "/v1/keys",
        Some("__Host-keyplane_session=forged-session-token"),
        None,
        None,
        None,
    )
    .await;
    // A portal link, and the portal session it starts.
    let portal = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": developer.user_id}, "return_url": "https://app.example.com/"}),
        )
        .await;
    assert_eq!(portal.status, 201, "{:?}", portal.body);
    let portal_link = portal.body["url"].as_str().expect("url").to_owned();
    let anonymous = keyplane_control_plane::auth::Anonymous {
        context: Default::default(),
        headers: Default::default(),
    };
    let entry =
        keyplane_control_plane::portal::enter(&app.state, token_of(&portal_link), &anonymous)
            .await
            .expect("the link works");
    let portal_cookie = entry.set_cookie.to_str().expect("ascii").to_owned();
    let portal_cookie = portal_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .expect("name=value")
        .1
        .to_owned();
    let stored = dump(&app).await;
    drop(guard);
    let logs =
        String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
    assert!(
        logs.contains("/v1/sessions") || logs.contains("/v1/invitations"),
        "the capture saw the requests"
    );
    let secrets = [
        PASSWORD.to_owned(),
        new_password.to_owned(),
        "wrong but long enough".to_owned(),
        owner.cookie.split_once('=').expect("value").1.to_owned(),
        developer
            .cookie
            .split_once('=')
            .expect("value")
            .1
            .to_owned(),
        token_of(&app.setup_link).to_owned(),
        token_of(&link).to_owned(),
        owner.csrf.clone(),
        "forged-session-token".to_owned(),
        token_of(&portal_link).to_owned(),
        portal_cookie,
        entry.csrf_token.clone(),
    ];
    for secret in &secrets {
        for (what, haystack) in [("database", &stored), ("logs", &logs)] {
            assert!(
                !haystack.contains(secret.as_str()),
                "a secret is in the {what}"
            );
        }
    }
}
