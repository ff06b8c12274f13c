//! Recording attempts: one the store refuses does not take the attempts recorded with it
//! along (here the refused one was recorded already, as by an instance that took its delivery
//! when the lease ended while this attempt waited to be recorded); and a slow success,
//! recorded after a failure made later, does not end the streak that failure started.

use keyplane_control_plane::store::NextStep;
use keyplane_control_plane::webhooks::delivery::{self, Tally};
use keyplane_shared::Timestamp;
use serde_json::json;

use super::{Receiver, claim, endpoint};
use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::webhooks::{NEVER_DISABLING, attempt};

backends!(
    an_attempt_the_store_refuses_does_not_take_the_others_with_it,
    a_slow_success_recorded_after_a_later_failure_keeps_its_failing_streak,
);

async fn an_attempt_the_store_refuses_does_not_take_the_others_with_it(app: TestApp) {
    let receiver = Receiver::start(204).await;
    endpoint(&app, &receiver.url, &["key.created"]).await;
    for name in ["first", "second", "third"] {
        app.create_key(json!({"name": name, "environment": "live"}))
            .await;
    }
    let claimed = claim(&app).await;
    assert_eq!(claimed.len(), 3);
    let now = app.state.now();
    let refused = &claimed[0];
    sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, attempt, at, duration_ms, status, \
         outcome, response) VALUES ($1, $2, $3, $4, 1, 204, 'delivered', '')",
    )
    .bind(refused.endpoint.id.to_bytes().to_vec())
    .bind(refused.event_id.to_bytes().to_vec())
    .bind(i64::from(refused.attempts) + 1)
    .bind(now.as_millis())
    .execute(app.pool())
    .await
    .expect("the attempt recorded elsewhere");
    let attempts: Vec<_> = claimed
        .iter()
        .map(|delivery| {
            let delivered = attempt(now, 204, "delivered");
            (delivery.clone(), delivered, NextStep::Delivered)
        })
        .collect();
    let done = delivery::record(&app.state, &attempts).await;
    assert_eq!(
        done,
        Tally {
            attempted: 2,
            delivered: 2,
            disabled: 0,
            unrecorded: 1,
        }
    );
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM webhook_deliveries ORDER BY state")
            .fetch_all(app.pool())
            .await
            .expect("states");
    assert_eq!(states, ["delivered", "delivered", "pending"]);
}

async fn a_slow_success_recorded_after_a_later_failure_keeps_its_failing_streak(app: TestApp) {
    let receiver = Receiver::start(204).await;
    let (id, _) = endpoint(&app, &receiver.url, &["key.created"]).await;
    for name in ["slow", "quick", "later"] {
        app.create_key(json!({"name": name, "environment": "live"}))
            .await;
    }
    let mut claimed = claim(&app).await;
    assert_eq!(claimed.len(), 3);
    let streak = NEVER_DISABLING;
    let now = app.state.now().as_millis();
    let attempt = |at: i64, status: u16, outcome: &str| attempt(Timestamp(at), status, outcome);
    let failing_since = || async {
        let shown = app.get(&format!("/v1/webhooks/{id}")).await;
        shown.body["failing_since"].clone()
    };
    let (later, quick, slow) = (
        claimed.pop().expect("one"),
        claimed.pop().expect("two"),
        claimed.pop().expect("three"),
    );
    // A failure made a second after the slow attempt started is recorded first...
    let retry = NextStep::RetryAt(Timestamp(now + 11_000));
    app.store
        .record_attempts(
            &[(quick, attempt(now + 1_000, 503, "http_error"), retry)],
            streak,
        )
        .await
        .expect("recorded");
    let since = failing_since().await;
    assert!(since.is_string(), "{since}");
    // ...then the slow attempt's success: the endpoint was failing after it.
    app.store
        .record_attempts(
            &[(slow, attempt(now, 204, "delivered"), NextStep::Delivered)],
            streak,
        )
        .await
        .expect("recorded");
    assert_eq!(
        failing_since().await,
        since,
        "the later failure's streak ended"
    );
    // A success made after the failure ends the streak.
    app.store
        .record_attempts(
            &[(
                later,
                attempt(now + 2_000, 204, "delivered"),
                NextStep::Delivered,
            )],
            streak,
        )
        .await
        .expect("recorded");
    assert!(failing_since().await.is_null());
}
