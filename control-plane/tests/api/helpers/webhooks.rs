//! Delivering what the outbox holds, as the worker does, from a test: one claim of the due
//! deliveries, waited for until every attempt it started is recorded.

use keyplane_control_plane::webhooks::delivery::{self, Deliverer, Tally};

use super::TestApp;

impl TestApp {
    /// A deliverer of this app's outbox, with the worker's places and HTTP client.
    pub fn deliverer(&self) -> Deliverer {
        let client = delivery::client(self.state.policy.local_dev).expect("client");
        Deliverer::new(self.state.clone(), client)
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
