//! The sign-in cleanup: sessions and portal links past their expiry are deleted a day later,
//! never before (so a session that can still be used is never touched); two sweeps at once
//! delete each row once.

use axum::http::StatusCode;
use keyplane_control_plane::people::cleanup::{Swept, sweep};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(spent_sessions_and_portal_links_are_deleted_a_day_after_their_expiry);

const HOUR: i64 = 3600;

async fn rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.pool())
        .await
        .expect("count")
}

async fn sign_in(app: &TestApp) -> String {
    app.sign_in_as("owner@example.com").await.cookie
}

async fn spent_sessions_and_portal_links_are_deleted_a_day_after_their_expiry(app: TestApp) {
    let owner = app.first_owner().await;
    let link = app
        .post(
            "/v1/portal/sessions",
            json!({"user": {"id": owner.user_id}, "return_url": "https://app.example.com/keys"}),
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{:?}", link.body);
    assert_eq!(
        (
            rows(&app, "sessions").await,
            rows(&app, "portal_links").await
        ),
        (1, 1)
    );

    // Twelve hours on, the session has reached its absolute expiry and the link (5 minutes)
    // is long spent: both are kept a day past their expiry.
    app.clock.advance_secs(12 * HOUR + 60);
    assert_eq!(sweep(&app.state).await.expect("swept"), Swept::default());
    let later = sign_in(&app).await;

    // A minute before a day past the session's expiry: only the link (a day and a half past
    // its own) goes.
    app.clock.advance_secs(24 * HOUR - 120);
    let links_only = Swept {
        sessions: 0,
        portal_links: 1,
    };
    assert_eq!(sweep(&app.state).await.expect("swept"), links_only);
    // A minute after: the session goes too; the later one (it expired 12 hours ago) stays.
    app.clock.advance_secs(120);
    let session_only = Swept {
        sessions: 1,
        portal_links: 0,
    };
    assert_eq!(sweep(&app.state).await.expect("swept"), session_only);
    assert_eq!(
        (
            rows(&app, "sessions").await,
            rows(&app, "portal_links").await
        ),
        (1, 0)
    );

    // A session signed in now is usable after a sweep; two sweeps at once a day later delete
    // the previous session once between them.
    let current = sign_in(&app).await;
    assert_ne!(current, later);
    app.clock.advance_secs(13 * HOUR);
    let (a, b) = tokio::join!(sweep(&app.state), sweep(&app.state));
    let (a, b) = (a.expect("one sweep"), b.expect("the other"));
    assert_eq!(a.sessions + b.sessions, 1, "{a:?} {b:?}");
    assert_eq!(rows(&app, "sessions").await, 1, "the current session stays");
}
