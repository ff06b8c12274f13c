//! Recording attempts: one the store refuses does not take the attempts recorded with it
//! along. Here the refused one was recorded already, as by an instance that took its delivery
//! when the lease ended while this attempt waited to be recorded.

use keyplane_control_plane::store::{Attempt, NextStep};
use keyplane_control_plane::webhooks::delivery::{self, Tally};
use serde_json::json;

use super::{Receiver, claim, endpoint};
use crate::backends;
use crate::helpers::TestApp;

backends!(an_attempt_the_store_refuses_does_not_take_the_others_with_it);

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
    let attempts = claimed
        .iter()
        .map(|delivery| {
            let attempt = Attempt {
                at: now,
                duration_ms: 2,
                status: Some(204),
                outcome: "delivered".into(),
                response: String::new(),
            };
            (delivery.clone(), attempt, NextStep::Delivered)
        })
        .collect();
    let done = delivery::record(&app.state, attempts).await;
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
