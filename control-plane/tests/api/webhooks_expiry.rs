//! The expiry scheduler: `key.expiring` 7 days and 1 day before a key's expiry (a key already
//! within a day gets the one-day notice alone), `key.expired` once it passed, each once however
//! many instances look at the same time; revoked keys are not announced, nor rotated ones (their
//! successors are); a key given a new expiry is reminded before that one too. An organization may choose its own lead times
//! (`/v1/organization/expiry-notices`), which apply to its keys alone.

use axum::http::{Method, StatusCode};
use keyplane_control_plane::bootstrap::create_organization;
use keyplane_control_plane::store::sql::Backend;
use keyplane_control_plane::webhooks::expiry;
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::mail::one_message_smtp_server;

backends!(
    expiries_are_announced_once_at_each_notice_and_when_they_pass,
    each_organization_chooses_its_own_lead_times,
    lead_times_are_checked_and_set_by_whoever_manages_the_organization,
    a_key_that_expired_over_a_day_before_anyone_looked_is_passed_over,
    a_longer_lead_time_added_later_is_not_announced_after_a_shorter_one,
    a_key_given_a_new_expiry_is_reminded_before_it_again,
    a_rotated_key_is_not_reminded_of_its_grace_period_its_successor_is,
    a_notice_that_cannot_be_written_holds_up_no_other,
);

mod by_email {
    use super::*;
    backends!(
        config = one_message_smtp_server;
        the_owner_of_a_key_expiring_soon_is_reminded_by_email,
    );
}

/// `PUT /v1/organization/expiry-notices` with `key`.
async fn put_notices(app: &TestApp, key: &str, body: Value) -> crate::helpers::Reply {
    app.call(
        Method::PUT,
        "/v1/organization/expiry-notices",
        Some(key),
        Some(body),
    )
    .await
}

/// A key "nightly export" of the first owner (owner@example.com), expiring in an hour; the
/// create's answer.
async fn owners_key_expiring_in_an_hour(app: &TestApp) -> Value {
    let owner = app.first_owner().await;
    let made = app
        .as_browser(
            &owner,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "nightly export", "environment": "live", "expires": "1h"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    made.body
}

/// SMTP configured, to a port where nothing listens.
fn smtp_nowhere(config: &mut keyplane_control_plane::Config) {
    config.people.smtp_url = Some("smtp://127.0.0.1:9".parse().expect("url"));
    config.people.smtp_from = Some("Keyplane <keys@example.com>".into());
}

mod email_down {
    use super::*;
    backends!(
        config = smtp_nowhere;
        a_reminder_that_could_not_be_emailed_is_not_tried_again,
    );
}

async fn a_reminder_that_could_not_be_emailed_is_not_tried_again(app: TestApp) {
    owners_key_expiring_in_an_hour(&app).await;
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring"]}),
    )
    .await;
    // The notice is announced (the webhook carries it) although the email fails...
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(summary(&app.take_due_events().await).len(), 1);
    // ...and the next looks neither announce nor email it again.
    for _ in 0..2 {
        app.clock.advance_secs(60);
        assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    }
    assert!(app.take_due_events().await.is_empty());
}

async fn the_owner_of_a_key_expiring_soon_is_reminded_by_email(app: TestApp) {
    let made = owners_key_expiring_in_an_hour(&app).await;
    let truncated = made["record"]["truncated_key"]
        .as_str()
        .expect("truncated")
        .to_owned();
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    let mail_file = app.data_dir.path().join("mail.txt");
    crate::helpers::until("the reminder is received", || async { mail_file.exists() }).await;
    let mail = std::fs::read_to_string(&mail_file).expect("mail");
    assert!(mail.contains("RCPT TO:<owner@example.com>"), "{mail}");
    assert!(
        mail.contains("Subject: Your API key \"nightly export\" expires in 1 hour"),
        "{mail}"
    );
    assert!(mail.contains(&truncated), "{mail}");
    // Once: the next look finds nothing to announce or send.
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}

/// An endpoint for `key.expiring` and `key.expired`, so that they are written to the outbox.
async fn subscribe_to_expiries(app: &TestApp) {
    let made = app
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring", "key.expired"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
}

fn summary(events: &[Value]) -> Vec<(String, String, Value)> {
    let mut list: Vec<(String, String, Value)> = events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["data"]["key"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event["data"]["notice_seconds_before"].clone(),
            )
        })
        .collect();
    list.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    list
}

async fn expiries_are_announced_once_at_each_notice_and_when_they_pass(app: TestApp) {
    subscribe_to_expiries(&app).await;
    app.create_key(json!({"name": "month", "environment": "live", "expires": "30d"}))
        .await;
    app.create_key(json!({"name": "hour", "environment": "live", "expires": "1h"}))
        .await;
    app.create_key(json!({"name": "forever", "environment": "live"}))
        .await;
    let (_, revoked) = app
        .create_key(json!({"name": "revoked", "environment": "live", "expires": "1h"}))
        .await;
    let revoked_id = revoked["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{revoked_id}/revoke"),
        json!({"reason": "unused"}),
    )
    .await;

    // Two instances look at once: one notice.
    let (one, two) = tokio::join!(
        expiry::announce_due(&app.state),
        expiry::announce_due(&app.state)
    );
    assert_eq!(one.expect("look") + two.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "hour".into(), json!(86_400))]
    );
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);

    // The hour passes: expired, announced once.
    app.clock.advance_secs(3601);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expired".into(), "hour".into(), Value::Null)]
    );

    // The month: 7 days before, 1 day before, then expired; nothing in between.
    app.clock.advance_secs(22 * 86_400);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    app.clock.advance_secs(86_400);
    assert_eq!(
        summary(&{
            expiry::announce_due(&app.state).await.expect("look");
            app.take_due_events().await
        }),
        [("key.expiring".into(), "month".into(), json!(604_800))]
    );
    app.clock.advance_secs(6 * 86_400);
    expiry::announce_due(&app.state).await.expect("look");
    let day_before = app.take_due_events().await;
    assert_eq!(
        summary(&day_before),
        [("key.expiring".into(), "month".into(), json!(86_400))]
    );
    assert!(day_before[0]["data"]["expires_at"].is_string());
    app.clock.advance_secs(86_400);
    expiry::announce_due(&app.state).await.expect("look");
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expired".into(), "month".into(), Value::Null)]
    );
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}

const DAY: i64 = 86_400;

async fn each_organization_chooses_its_own_lead_times(app: TestApp) {
    let defaults = app.get("/v1/organization/expiry-notices").await;
    assert_eq!(defaults.status, StatusCode::OK);
    assert_eq!(
        defaults.body,
        json!({"days_before": [7, 1], "default": true, "updated_at": null})
    );
    // Acme wants a month's notice and three days'; Globex keeps the defaults.
    let chosen = put_notices(&app, &app.admin_key, json!({"days_before": [3, 30, 3]})).await;
    assert_eq!(chosen.status, StatusCode::OK, "{:?}", chosen.body);
    assert_eq!(chosen.body["days_before"], json!([30, 3]));
    assert_eq!(chosen.body["default"], json!(false));
    let read = app.get("/v1/organization/expiry-notices").await;
    assert_eq!(read.body, chosen.body);
    let audited = app.audit().await;
    let last = audited.last().expect("a record");
    assert_eq!(last["action"], "expiry_notices_updated");
    assert_eq!(last["details"]["days_before"], json!([30, 3]));

    let (_, globex) = create_organization(&app.state, "Globex")
        .await
        .expect("second org");
    let globex = globex.expose_secret().to_owned();
    let other = app
        .call(
            Method::GET,
            "/v1/organization/expiry-notices",
            Some(&globex),
            None,
        )
        .await;
    assert_eq!(other.body["days_before"], json!([7, 1]), "{:?}", other.body);
    for key in [&app.admin_key, &globex] {
        let hook = app
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(key),
                Some(json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring", "key.expired"]})),
            )
            .await;
        assert_eq!(hook.status, StatusCode::CREATED, "{:?}", hook.body);
    }
    app.create_key(json!({"name": "acme", "environment": "live", "expires": "90d"}))
        .await;
    let globex_key = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&globex),
            Some(json!({"name": "globex", "environment": "live", "expires": "90d"})),
        )
        .await;
    assert_eq!(
        globex_key.status,
        StatusCode::CREATED,
        "{:?}",
        globex_key.body
    );

    let look = async |advance_days: i64| {
        app.clock.advance_secs(advance_days * DAY);
        expiry::announce_due(&app.state).await.expect("look");
        summary(&app.take_due_events().await)
    };
    let notice = |name: &str, days: i64| {
        (
            "key.expiring".to_owned(),
            name.to_owned(),
            json!(days * DAY),
        )
    };
    // 30 days before: Acme alone. 7 days before: Globex alone (Acme did not ask for 7).
    assert_eq!(look(60).await, [notice("acme", 30)]);
    assert_eq!(look(23).await, [notice("globex", 7)]);
    // 3 days before: Acme; 1 day before: Globex; then both expire.
    assert_eq!(look(4).await, [notice("acme", 3)]);
    assert_eq!(look(2).await, [notice("globex", 1)]);
    let expired = look(1).await;
    assert_eq!(
        expired,
        [
            ("key.expired".into(), "acme".into(), Value::Null),
            ("key.expired".into(), "globex".into(), Value::Null),
        ]
    );

    // None at all: no key.expiring, but key.expired still comes.
    let none = put_notices(&app, &app.admin_key, json!({"days_before": []})).await;
    assert_eq!(none.body["days_before"], json!([]));
    app.create_key(json!({"name": "quiet", "environment": "live", "expires": "7d"}))
        .await;
    assert_eq!(look(6).await, []);
    assert_eq!(
        look(1).await,
        [("key.expired".into(), "quiet".into(), Value::Null)]
    );
}

async fn lead_times_are_checked_and_set_by_whoever_manages_the_organization(app: TestApp) {
    let put = async |key: &str, body: Value| put_notices(&app, key, body).await;
    for (body, says) in [
        (
            json!({"days_before": [0]}),
            "0 is not one of 1, 3, 7, 14, 30, 60, 90 days",
        ),
        (json!({"days_before": [2]}), "2 is not one of"),
        (json!({"days_before": [365]}), "365 is not one of"),
        (json!({"days_before": [1, 3, 7, 14, 30, 60]}), "at most 5"),
    ] {
        let reply = put(&app.admin_key, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.code(), "invalid_request");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(says)),
            "{:?}",
            reply.body
        );
    }
    for body in [
        json!({"days_before": [1.5]}),
        json!({"days_before": [-1]}),
        json!({"days_before": "7"}),
        json!({"days": [7]}),
    ] {
        let reply = put(&app.admin_key, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // A management key without admin:full may read them but not change them.
    let (reader, _) = app
        .create_key(json!({"name": "ops", "environment": "live", "scopes": ["api-keys:manage"]}))
        .await;
    let read = app
        .call(
            Method::GET,
            "/v1/organization/expiry-notices",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let refused = put(&reader, json!({"days_before": [14]})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    // A member (not an owner or admin) neither.
    let owner = app.first_owner().await;
    let member = app
        .member(&owner, "dev@example.com", "Dev", "developer")
        .await;
    let refused = app
        .as_browser(
            &member,
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(json!({"days_before": [14]})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let by_owner = app
        .as_browser(
            &owner,
            Method::PUT,
            "/v1/organization/expiry-notices",
            Some(json!({"days_before": [14]})),
        )
        .await;
    assert_eq!(by_owner.status, StatusCode::OK, "{:?}", by_owner.body);
    let read = app.get("/v1/organization/expiry-notices").await;
    assert_eq!(read.body["days_before"], json!([14]));
}

async fn a_key_that_expired_over_a_day_before_anyone_looked_is_passed_over(app: TestApp) {
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring", "key.expired"]}),
    )
    .await;
    app.create_key(json!({"name": "missed", "environment": "live", "expires": "1h"}))
        .await;
    app.create_key(json!({"name": "caught", "environment": "live", "expires": "7d"}))
        .await;
    // No instance looked for 25 hours: "missed" expired 24 hours ago, past the window, and is
    // never announced; "caught", now within 7 days of its expiry, gets its 7-day notice.
    app.clock.advance_secs(3600 + DAY + 1);
    expiry::announce_due(&app.state).await.expect("look");
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "caught".into(), json!(7 * DAY))]
    );
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}

async fn a_longer_lead_time_added_later_is_not_announced_after_a_shorter_one(app: TestApp) {
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring"]}),
    )
    .await;
    app.create_key(json!({"name": "soon", "environment": "live", "expires": "1h"}))
        .await;
    app.create_key(json!({"name": "later", "environment": "live", "expires": "90d"}))
        .await;
    expiry::announce_due(&app.state).await.expect("look");
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "soon".into(), json!(DAY))]
    );
    // A month's notice, chosen now: "soon" was told it has a day, and is not told it has a
    // month; "later" gets its month's notice when its time comes.
    let chosen = put_notices(&app, &app.admin_key, json!({"days_before": [30, 7, 1]})).await;
    assert_eq!(chosen.status, StatusCode::OK, "{:?}", chosen.body);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    app.clock.advance_secs(60 * DAY);
    expiry::announce_due(&app.state).await.expect("look");
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "later".into(), json!(30 * DAY))]
    );
}

async fn a_key_given_a_new_expiry_is_reminded_before_it_again(app: TestApp) {
    app.post(
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/none", "events": ["key.expiring"]}),
    )
    .await;
    let (_, key) = app
        .create_key(json!({"name": "extended", "environment": "live", "expires": "1h"}))
        .await;
    let id = key["id"].as_str().expect("id");
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    app.take_due_events().await;
    // Reminded a day ahead, the owner extends it by a month: it is reminded a week and a day
    // before the new expiry, as any key is.
    let extended = app
        .patch(&format!("/v1/keys/{id}"), json!({"expires": "30d"}))
        .await;
    assert_eq!(extended.status, StatusCode::OK, "{:?}", extended.body);
    app.clock.advance_secs(23 * 86_400 + 60);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "extended".into(), json!(604_800))]
    );
    app.clock.advance_secs(6 * 86_400);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "extended".into(), json!(86_400))]
    );
    // A change that leaves the expiry as it was forgets nothing.
    app.patch(&format!("/v1/keys/{id}"), json!({"name": "renamed"}))
        .await;
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
}

/// The nightly `rotate-due --grace 7d` case: the old key's expiry becomes the end of its grace
/// period, which is the rotation's doing, not something to act on. It gets no `key.expiring`
/// (nor a reminder email) and no `key.expired`; its successor, living as long as it did, is
/// reminded before its own expiry.
async fn a_rotated_key_is_not_reminded_of_its_grace_period_its_successor_is(app: TestApp) {
    subscribe_to_expiries(&app).await;
    let (_, old) = app
        .create_key(json!({"name": "nightly", "environment": "live", "expires": "30d"}))
        .await;
    let old_id = old["id"].as_str().expect("id");
    let rotated = app
        .post(
            &format!("/v1/keys/{old_id}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let successor_id = rotated.body["record"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Within a day of the old key's end (the grace's): nothing.
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    app.clock.advance_secs(3601);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 0);
    assert!(app.take_due_events().await.is_empty());
    // The successor, 7 days before its expiry.
    app.clock.advance_secs(23 * 86_400);
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    let events = app.take_due_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "key.expiring");
    assert_eq!(events[0]["data"]["key_id"], successor_id.as_str());
}

/// A notice the database will not take (here a trigger refuses the `blocked` key's notice row;
/// in life, its organization's row held past the lock timeout) is passed over and tried again
/// at the next look: the keys after it are still announced.
async fn a_notice_that_cannot_be_written_holds_up_no_other(app: TestApp) {
    subscribe_to_expiries(&app).await;
    app.create_key(json!({"name": "blocked", "environment": "live", "expires": "1h"}))
        .await;
    app.clock.advance_secs(60);
    app.create_key(json!({"name": "fine", "environment": "live", "expires": "1h"}))
        .await;
    let statements: &[&str] = match app.backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER notices_blocked BEFORE INSERT ON key_notices \
            WHEN NEW.key_id = (SELECT id FROM api_keys WHERE name = 'blocked') \
            BEGIN SELECT RAISE(ABORT, 'blocked'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION notices_blocked() RETURNS trigger AS $$ BEGIN \
             IF NEW.key_id = (SELECT id FROM api_keys WHERE name = 'blocked') THEN \
             RAISE EXCEPTION 'blocked'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER notices_blocked BEFORE INSERT ON key_notices \
             FOR EACH ROW EXECUTE FUNCTION notices_blocked()",
        ],
    };
    for statement in statements.iter().copied() {
        sqlx::query(statement)
            .execute(app.pool())
            .await
            .expect("trigger");
    }
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "fine".into(), json!(86_400))]
    );
    // Once the database takes it, the passed-over notice goes out at the next look.
    let drop = match app.backend {
        Backend::Sqlite => "DROP TRIGGER notices_blocked",
        Backend::Postgres => "DROP TRIGGER notices_blocked ON key_notices",
    };
    sqlx::query(drop).execute(app.pool()).await.expect("drop");
    assert_eq!(expiry::announce_due(&app.state).await.expect("look"), 1);
    assert_eq!(
        summary(&app.take_due_events().await),
        [("key.expiring".into(), "blocked".into(), json!(86_400))]
    );
}
