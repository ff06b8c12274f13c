//! Delivering what the outbox holds, as the worker does, from a test: one claim of the due
//! deliveries, waited for until every attempt it started is recorded; and the attempts the
//! tests that record by hand make.

use keyplane_control_plane::store::{Attempt, FailureStreak};
use keyplane_control_plane::webhooks::delivery::{self, Deliverer, Tally};
use keyplane_shared::Timestamp;

use super::TestApp;

/// A failing streak that never disables its endpoint, and that a day without attempts ends.
pub const NEVER_DISABLING: FailureStreak = FailureStreak {
    disable_after_ms: i64::MAX,
    idle_gap_ms: 86_400_000,
};

/// An attempt made at `at` that took 5 ms and was answered with `status`.
pub fn attempt(at: Timestamp, status: u16, outcome: &str) -> Attempt {
    Attempt {
        at,
        duration_ms: 5,
        status: Some(status),
        outcome: outcome.into(),
        response: String::new(),
    }
}

impl TestApp {
    /// A deliverer of this app's outbox, with the worker's places and HTTP client.
    pub fn deliverer(&self) -> Deliverer {
        self.deliverer_with_places(delivery::PLACES)
    }

    /// A deliverer of this app's outbox with `places` places, and the worker's HTTP client.
    pub fn deliverer_with_places(&self, places: usize) -> Deliverer {
        let client = delivery::client(self.state.policy.local_dev).expect("client");
        Deliverer::with_places(self.state.clone(), client, places)
    }

    /// Claims what is due (at most a claim's batch), sends it, and waits until every attempt
    /// is recorded; what they came to.
    pub async fn deliver_due(&self) -> Tally {
        let mut deliverer = self.deliverer();
        deliverer
            .claim()
            .await
            .expect("a claim of the due deliveries");
        deliverer.settled().await.expect("every attempt recorded")
    }
}
