//! The webhook history cleanup: after 30 days, attempts, settled deliveries and the events no
//! delivery refers to any more are deleted, and `key.rate_limited` notice rows after 7 days;
//! a pending delivery and its event stay however old; a delivery whose event went is given up
//! when claimed. A key's expiry notice rows go 7 days after its expiry, and not before, however
//! long ago they were sent (a reminder a month ahead is still needed a week later).

use axum::http::{Method, StatusCode};
use keyplane_control_plane::store::WebhookHistorySwept;
use keyplane_control_plane::webhooks::{expiry, history};
use serde_json::json;
use sqlx::Row as _;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    settled_webhook_history_goes_after_30_days_and_pending_deliveries_stay,
    expiry_notice_rows_go_a_week_after_their_keys_expiry_and_nothing_is_announced_again,
    a_month_ahead_reminder_sent_over_a_week_ago_stays_while_its_key_lives,
);

/// Rows of `table` (a fixed name).
async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.pool())
        .await
        .expect("count")
        .get::<i64, _>(0)
}

/// The event id of `key`'s `key.created` delivery.
async fn event_of(app: &TestApp, name: &str) -> Vec<u8> {
    sqlx::query(
        "SELECT d.event_id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         WHERE e.body LIKE $1",
    )
    .bind(format!("%\"name\":\"{name}\"%"))
    .fetch_one(app.pool())
    .await
    .expect("the key's delivery")
    .get::<Vec<u8>, _>(0)
}

async fn settled_webhook_history_goes_after_30_days_and_pending_deliveries_stay(app: TestApp) {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/none", "events": ["key.created"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let (_, settled) = app
        .create_key(json!({"name": "settled", "environment": "live"}))
        .await;
    app.create_key(json!({"name": "pending", "environment": "live"}))
        .await;
    // The first key's delivery was tried once and given up; the second's is still pending.
    let settled_event = event_of(&app, "settled").await;
    sqlx::query("UPDATE webhook_deliveries SET state = 'failed', attempts = 1 WHERE event_id = $1")
        .bind(settled_event.clone())
        .execute(app.pool())
        .await
        .expect("settle");
    sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, attempt, at, duration_ms, status, \
         outcome, response) SELECT endpoint_id, event_id, 1, $1, 3, NULL, 'connect_error', '' \
         FROM webhook_deliveries WHERE event_id = $2",
    )
    .bind(app.state.now().as_millis())
    .bind(settled_event)
    .execute(app.pool())
    .await
    .expect("attempt");
    let key_id = settled["id"].as_str().expect("id");
    let key_bytes = keyplane_shared::ids::KeyId::parse(key_id)
        .expect("key id")
        .to_bytes()
        .to_vec();
    for notice in ["rate_limited:500000", "expiring:86400"] {
        sqlx::query("INSERT INTO key_notices (key_id, notice, sent_at) VALUES ($1, $2, $3)")
            .bind(key_bytes.clone())
            .bind(notice)
            .bind(app.state.now().as_millis())
            .execute(app.pool())
            .await
            .expect("notice");
    }
    // Nothing is old enough yet.
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept::default()
    );
    // A month and a day on, with a new event beside the old ones.
    app.clock.advance_secs(31 * 86_400);
    app.create_key(json!({"name": "new", "environment": "live"}))
        .await;
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept {
            attempts: 1,
            deliveries: 1,
            events: 1,
            notices: 1,
            expiry_notices: 0,
        }
    );
    assert_eq!(count(&app, "webhook_attempts").await, 0);
    // The pending delivery (old) and the new one, with their events.
    assert_eq!(count(&app, "webhook_deliveries").await, 2);
    assert_eq!(count(&app, "webhook_events").await, 2);
    event_of(&app, "pending").await;
    assert_eq!(notice_rows(&app).await, ["expiring:86400"]);
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept::default()
    );
    // A delivery made pending again (a redeliver) as the sweep took its event: claiming it
    // gives it up rather than failing every claim after it.
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, \
         next_attempt_at, claimed_until, created_at) \
         SELECT endpoint_id, $1, 'pending', 1, 0, 0, 0 FROM webhook_deliveries LIMIT 1",
    )
    .bind(vec![7u8; 16])
    .execute(app.pool())
    .await
    .expect("an orphan delivery");
    let now = app.state.now();
    let claimed = app
        .store
        .claim_deliveries(now, now, 100)
        .await
        .expect("the claim goes on");
    assert_eq!(claimed.len(), 2, "the two pending deliveries with events");
    let orphan: String =
        sqlx::query_scalar("SELECT state FROM webhook_deliveries WHERE event_id = $1")
            .bind(vec![7u8; 16])
            .fetch_one(app.pool())
            .await
            .expect("the orphan");
    assert_eq!(orphan, "failed");
}

/// The notice rows in `key_notices`, sorted.
async fn notice_rows(app: &TestApp) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query("SELECT notice FROM key_notices")
        .fetch_all(app.pool())
        .await
        .expect("notices")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    rows.sort();
    rows
}

async fn expiry_notice_rows_go_a_week_after_their_keys_expiry_and_nothing_is_announced_again(
    app: TestApp,
) {
    const DAY: i64 = 86_400;
    app.create_key(json!({"name": "hour", "environment": "live", "expires": "1h"}))
        .await;
    // The hour's key: reminded a day before (it is within it; the week's notice is recorded as
    // passed over), then announced as expired.
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    app.clock.advance_secs(3601);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    let hours_rows = ["expired", "expiring:604800", "expiring:86400"];
    assert_eq!(notice_rows(&app).await, hours_rows);
    // Six days after its expiry they stay.
    app.clock.advance_secs(6 * DAY);
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept::default()
    );
    // A week and a minute after it, a key made for a week is reminded at once; the sweep takes
    // the hour's key's three rows and leaves that reminder.
    app.clock.advance_secs(DAY + 60);
    app.create_key(json!({"name": "week", "environment": "live", "expires": "7d"}))
        .await;
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        notice_rows(&app).await,
        [
            "expired",
            "expiring:604800",
            "expiring:604800",
            "expiring:86400"
        ]
    );
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept {
            expiry_notices: 3,
            ..WebhookHistorySwept::default()
        }
    );
    assert_eq!(notice_rows(&app).await, ["expiring:604800"]);
}

async fn a_month_ahead_reminder_sent_over_a_week_ago_stays_while_its_key_lives(app: TestApp) {
    let chosen = app
        .call(
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(&app.admin_key),
            Some(json!({"days_before": [30]})),
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{:?}", chosen.body);
    app.create_key(json!({"name": "month", "environment": "live", "expires": "30d"}))
        .await;
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    // Twenty days on, the reminder was sent long before the sweep's cutoff, but its key still
    // expires after it: without the row, the next look would remind the key again.
    app.clock.advance_secs(20 * 86_400);
    assert_eq!(
        history::sweep(&app.state).await.expect("sweep"),
        WebhookHistorySwept::default()
    );
    assert_eq!(notice_rows(&app).await, ["expiring:2592000"]);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}
