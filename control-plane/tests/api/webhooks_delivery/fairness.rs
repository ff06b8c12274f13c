//! An endpoint slow to answer does not hold up other endpoints' deliveries: a claim gives it no
//! more than its share of places, which its attempts hold while they hang, and the worker
//! claims the others' deliveries as they come. An instance keeps at most its number of places
//! in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use keyplane_control_plane::store::webhooks::ENDPOINT_IN_FLIGHT;
use keyplane_control_plane::webhooks::delivery::{self, BATCH, Claim, Deliverer, Tally};
use serde_json::json;
use tokio::sync::watch;

use super::{Receiver, endpoint};
use crate::backends;
use crate::helpers::{TestApp, until};

backends!(
    a_hanging_endpoint_does_not_hold_up_another_endpoints_deliveries,
    an_instance_keeps_at_most_its_places_in_flight,
    a_backlog_beyond_an_endpoints_share_leaves_a_claims_other_places_to_others,
    the_worker_sends_what_comes_while_an_endpoint_hangs,
);

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

/// Waits until the recorded attempts come to `expected`.
async fn recorded(deliverer: &Deliverer, expected: Tally) {
    let mut recorded = deliverer.recorded();
    until("the attempts recorded", || {
        let now = *recorded.borrow_and_update();
        async move { now == expected }
    })
    .await;
}

fn delivered(count: usize) -> Tally {
    Tally {
        attempted: count,
        delivered: count,
        ..Tally::default()
    }
}

async fn create_keys(app: &TestApp, label: &str, count: usize) {
    for n in 0..count {
        app.create_key(json!({"name": format!("{label} {n}"), "environment": "live"}))
            .await;
    }
}

async fn a_hanging_endpoint_does_not_hold_up_another_endpoints_deliveries(app: TestApp) {
    let share = ENDPOINT_IN_FLIGHT as usize;
    assert_eq!(
        share, BATCH as usize,
        "the counts below assume a share per claim"
    );
    // A backlog for the hanging endpoint, older than anything the healthy one gets.
    let hanging = Hanging::start().await;
    endpoint(&app, &hanging.url, &["key.created"]).await;
    create_keys(&app, "early", share + 8).await;
    app.clock.advance_secs(1);
    let healthy = Receiver::start(204).await;
    endpoint(&app, &healthy.url, &["key.created"]).await;
    create_keys(&app, "late", 8).await;
    // One instance, with 8 places, sends 8 of the backlog.
    let mut small = app.deliverer_with_places(8);
    assert_eq!(small.claim().await.expect("a claim").taken, 8);
    // The next claim gives the hanging endpoint only the rest of its share, the oldest of its
    // backlog, and takes the healthy endpoint's newer deliveries beside them (oldest first
    // alone, it would take the backlog's 32 and none of the healthy endpoint's).
    let mut deliverer = app.deliverer();
    let second = deliverer.claim().await.expect("a claim");
    assert_eq!(
        second,
        Claim {
            asked: 32,
            taken: 32
        }
    );
    // The healthy endpoint's deliveries, among them, are delivered and recorded while the
    // hanging ones still wait for an answer.
    recorded(&deliverer, delivered(8)).await;
    // (Within the attempts' 10 s timeout, on any machine that runs these tests at all; past
    // it, the attempts would end as timeouts and the counts below would not hold.)
    until("the share at the hanging endpoint", || async {
        hanging.received() >= share
    })
    .await;
    assert_eq!(healthy.types().len(), 8);
    // The next claim passes over the endpoint with its share in flight.
    assert_eq!(deliverer.claim().await.expect("a claim").taken, 0);
    assert_eq!(small.in_flight() + deliverer.in_flight(), share);
    assert_eq!(
        hanging.received(),
        share,
        "the hanging endpoint was sent more"
    );
    // Once the endpoint answers, its attempts in flight are recorded as delivered, and the
    // rest of its backlog (the 8 early events and the 8 late ones) goes out.
    hanging.let_go.send(true).expect("the receiver listens");
    assert_eq!(small.settled().await.expect("recorded"), delivered(8));
    let settled = deliverer.settled().await.expect("every attempt recorded");
    assert_eq!(settled, delivered(share));
    assert_eq!(deliverer.claim().await.expect("a claim").taken, 16);
    assert_eq!(deliverer.settled().await.expect("recorded"), delivered(16));
    assert_eq!(deliverer.claim().await.expect("a claim").taken, 0);
    assert_eq!(hanging.received(), share + 16);
}

/// The places are the only bound here: the endpoint is far from its share in flight.
async fn an_instance_keeps_at_most_its_places_in_flight(app: TestApp) {
    let hanging = Hanging::start().await;
    endpoint(&app, &hanging.url, &["key.created"]).await;
    create_keys(&app, "early", 6).await;
    app.clock.advance_secs(1);
    let healthy = Receiver::start(204).await;
    endpoint(&app, &healthy.url, &["key.created"]).await;
    create_keys(&app, "late", 2).await;
    let mut deliverer = app.deliverer_with_places(4);
    assert_eq!(
        deliverer.claim().await.expect("a claim"),
        Claim { asked: 4, taken: 4 }
    );
    until("four at the hanging endpoint", || async {
        hanging.received() == 4
    })
    .await;
    // Every place is taken: nothing more is claimed, not even the healthy endpoint's.
    assert_eq!(
        deliverer.claim().await.expect("a claim"),
        Claim { asked: 0, taken: 0 }
    );
    assert_eq!(deliverer.in_flight(), 4);
    assert!(healthy.types().is_empty());
    hanging.let_go.send(true).expect("the receiver listens");
    assert_eq!(deliverer.settled().await.expect("recorded"), delivered(4));
    // The places are free again: the rest (the hanging endpoint's 2 early and 2 late events,
    // the healthy one's 2) goes out, four at a time.
    assert_eq!(
        deliverer.claim().await.expect("a claim"),
        Claim { asked: 4, taken: 4 }
    );
    assert_eq!(deliverer.settled().await.expect("recorded"), delivered(4));
    assert_eq!(
        deliverer.claim().await.expect("a claim"),
        Claim { asked: 4, taken: 2 }
    );
    assert_eq!(deliverer.settled().await.expect("recorded"), delivered(2));
    assert_eq!(hanging.received(), 8);
    assert_eq!(healthy.types().len(), 2);
}

/// A claim reads each endpoint's oldest due deliveries only up to its places: with a hanging
/// endpoint's backlog, all older than another endpoint's event and far more than a claim's
/// places, one claim of two places takes the last place of the hanging endpoint's share and
/// the other endpoint's event.
async fn a_backlog_beyond_an_endpoints_share_leaves_a_claims_other_places_to_others(app: TestApp) {
    let share = ENDPOINT_IN_FLIGHT as usize;
    let hanging = Hanging::start().await;
    endpoint(&app, &hanging.url, &["key.created"]).await;
    create_keys(&app, "early", share - 1 + 40).await;
    app.clock.advance_secs(1);
    let healthy = Receiver::start(204).await;
    endpoint(&app, &healthy.url, &["key.created"]).await;
    create_keys(&app, "late", 1).await;
    let mut most = app.deliverer_with_places(share - 1);
    assert_eq!(most.claim().await.expect("a claim").taken, share - 1);
    until(
        "all but one of its share at the hanging endpoint",
        || async { hanging.received() == share - 1 },
    )
    .await;
    // Two places: one left of the hanging endpoint's share, then the healthy endpoint's event
    // (its 40 due deliveries beyond that are not candidates).
    let mut two = app.deliverer_with_places(2);
    assert_eq!(
        two.claim().await.expect("a claim"),
        Claim { asked: 2, taken: 2 }
    );
    until("the healthy endpoint's event", || async {
        healthy.types().len() == 1
    })
    .await;
    hanging.let_go.send(true).expect("the receiver listens");
    assert_eq!(
        most.settled().await.expect("recorded"),
        delivered(share - 1)
    );
    assert_eq!(two.settled().await.expect("recorded"), delivered(2));
    assert_eq!(hanging.received(), share);
}

/// The worker's own loop: while a hanging endpoint holds its share of places, each event for
/// another endpoint is sent as its change commits, without waiting for the hanging attempts.
async fn the_worker_sends_what_comes_while_an_endpoint_hangs(app: TestApp) {
    let share = ENDPOINT_IN_FLIGHT as usize;
    let hanging = Hanging::start().await;
    endpoint(&app, &hanging.url, &["key.created"]).await;
    create_keys(&app, "early", share + 8).await;
    let deliverer = app.deliverer();
    let recorded = deliverer.recorded();
    let (stop, stopped) = watch::channel(false);
    let worker = delivery::run(deliverer, stopped);
    until("its share at the hanging endpoint", || async {
        hanging.received() == share
    })
    .await;
    let healthy = Receiver::start(204).await;
    endpoint(&app, &healthy.url, &["key.created"]).await;
    for n in 1..=4 {
        create_keys(&app, &format!("late {n}"), 1).await;
        until("the event at the healthy endpoint", || async {
            healthy.types().len() == n
        })
        .await;
    }
    assert_eq!(hanging.received(), share, "past the endpoint's share");
    until("the healthy endpoint's attempts recorded", || async {
        recorded.borrow().attempted == 4
    })
    .await;
    hanging.let_go.send(true).expect("the receiver listens");
    // Its backlog (the 8 left and the 4 new events) follows once places of its own free up.
    until("every event delivered", || async {
        recorded.borrow().delivered == share + 8 + 4 + 4
    })
    .await;
    assert_eq!(*recorded.borrow(), delivered(share + 16));
    assert_eq!(hanging.received(), share + 12);
    stop.send(true).expect("the worker listens");
    worker.await.expect("the worker stops");
}
