//! An endpoint slow to answer does not hold up other endpoints' deliveries: a round leaves the
//! attempts that outlast its patience to be recorded when they end, and the next rounds pass
//! over an endpoint with a full batch in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use keyplane_control_plane::store::webhooks::ENDPOINT_IN_FLIGHT;
use keyplane_control_plane::webhooks::delivery::{self, BATCH, Round};
use serde_json::json;
use tokio::sync::watch;

use super::{Receiver, endpoint};
use crate::backends;
use crate::helpers::{TestApp, until};

backends!(a_hanging_endpoint_does_not_hold_up_another_endpoints_deliveries);

/// A receiver that answers nothing until it is let go, then 204 to everything.
struct Hanging {
    url: String,
    received: Arc<AtomicUsize>,
    let_go: watch::Sender<bool>,
}

impl Hanging {
    async fn start() -> Self {
        let received = Arc::new(AtomicUsize::new(0));
        let (let_go, waiting) = watch::channel(false);
        let counted = received.clone();
        let app = axum::Router::new().fallback(move || {
            let (counted, mut waiting) = (counted.clone(), waiting.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = waiting.wait_for(|gone| *gone).await;
                StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hanging {
            url,
            received,
            let_go,
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

async fn round(app: &TestApp) -> Round {
    let client = delivery::client(app.state.policy.local_dev).expect("client");
    delivery::deliver_due(&app.state, &client)
        .await
        .expect("a delivery round")
}

async fn a_hanging_endpoint_does_not_hold_up_another_endpoints_deliveries(app: TestApp) {
    assert_eq!(
        ENDPOINT_IN_FLIGHT, BATCH,
        "the counts below assume one batch per endpoint"
    );
    let batch = BATCH as usize;
    // A backlog for the hanging endpoint, older than anything the healthy one gets.
    let hanging = Hanging::start().await;
    endpoint(&app, &hanging.url, &["key.created"]).await;
    for n in 0..batch + 8 {
        app.create_key(json!({"name": format!("early {n}"), "environment": "live"}))
            .await;
    }
    app.clock.advance_secs(1);
    let healthy = Receiver::start(204).await;
    endpoint(&app, &healthy.url, &["key.created"]).await;
    for n in 0..8 {
        app.create_key(json!({"name": format!("late {n}"), "environment": "live"}))
            .await;
    }
    // The first round takes the oldest batch, all the hanging endpoint's, and does not wait
    // for them past its patience.
    let first = round(&app).await;
    assert_eq!((first.attempted, first.claimed()), (0, batch));
    // (Within the attempts' 10 s timeout, on any machine that runs these tests at all; past
    // it, the attempts would end as timeouts and the counts below would not hold.)
    until("the batch at the hanging endpoint", || async {
        hanging.received() == batch
    })
    .await;
    // The next round passes over the endpoint with a batch in flight: the healthy endpoint's
    // deliveries go out while the hanging ones still wait for an answer.
    let second = round(&app).await.settled().await.expect("settled");
    assert_eq!((second.attempted, second.delivered), (8, 8));
    assert_eq!(healthy.types().len(), 8);
    assert_eq!(
        hanging.received(),
        batch,
        "the hanging endpoint was sent more"
    );
    // Once the endpoint answers, its attempts in flight are recorded as delivered, and the
    // rest of its backlog goes out.
    hanging.let_go.send(true).expect("the receiver listens");
    let first = first.settled().await.expect("the slow attempts recorded");
    assert_eq!((first.attempted, first.delivered), (batch, batch));
    let third = round(&app).await.settled().await.expect("settled");
    assert_eq!(third.delivered, 16);
    assert_eq!(round(&app).await.claimed(), 0);
    assert_eq!(hanging.received(), batch + 16);
}
