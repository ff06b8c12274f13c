//! The delivery worker: claims due deliveries from the outbox, posts each signed event to its
//! endpoint, records the attempt, and schedules the next one ([`super::backoff`]).
//!
//! A claim is a lease of [`LEASE`]: an instance that dies mid-delivery leaves its claims to be
//! taken again when the lease ends, so an event committed before a crash is still delivered
//! (at least once: a receiver drops repeats by `webhook-id`). Every instance may run this;
//! the store's claim gives each delivery to one of them at a time.
//!
//! There are no rounds: an instance keeps up to [`PLACES`] attempts in flight ([`Deliverer`]),
//! claims due deliveries into the places that are free (at most [`BATCH`] at a time), and
//! records each attempt as it ends, together with the others that ended meanwhile (one
//! transaction for all of them: a commit per attempt was what bounded the worker). A place is
//! held from the claim until the attempt is recorded. An endpoint slow to answer (up to
//! [`ATTEMPT_TIMEOUT`]) holds at most [`ENDPOINT_IN_FLIGHT`] places (the claim gives it no
//! more), and the deliveries of every other endpoint are claimed as soon as they are due and a
//! place is free: hanging endpoints hold up the others' deliveries only when there are so many
//! of them that they hold every place (`PLACES / ENDPOINT_IN_FLIGHT`, 24: more than the 20 one
//! organization may have).

use std::sync::Arc;
use std::time::Duration;

use keyplane_shared::Timestamp;
use reqwest::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::after_failure;
use crate::state::AppState;
use crate::store::webhooks::{ENDPOINT_IN_FLIGHT, MAX_WEBHOOKS_PER_ORG};
use crate::store::{Attempt, ClaimedDelivery, NextStep, StoreError};

mod recording;
mod send;

pub use recording::record;
pub use send::client;

/// How long a claim is held: longer than an attempt can take.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most deliveries one claim takes.
pub const BATCH: u32 = 32;
/// The most attempts one instance has in flight (claimed and not yet recorded).
pub const PLACES: usize = 768;
// One organization's endpoints, all hanging, cannot hold every place of an instance.
const _: () = assert!(PLACES as u64 / ENDPOINT_IN_FLIGHT as u64 > MAX_WEBHOOKS_PER_ORG);
/// The most ended attempts recorded in one transaction.
pub const RECORD_BATCH: usize = 64;
/// How long the recorder waits, once an attempt ended, for others ending with it.
pub const GATHER: Duration = Duration::from_millis(2);
/// How often the outbox is looked at when the last claim took nothing.
pub const POLL: Duration = Duration::from_millis(200);
/// How much of an answer is kept with the attempt, in bytes.
pub const RESPONSE_HEAD: usize = 256;

/// What the attempts recorded so far came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Attempts made and recorded.
    pub attempted: usize,
    /// Of which delivered.
    pub delivered: usize,
    /// Endpoints disabled for failing too long.
    pub disabled: usize,
    /// Attempts whose recording failed: their deliveries are claimed again when the lease ends.
    pub unrecorded: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.attempted += other.attempted;
        self.delivered += other.delivered;
        self.disabled += other.disabled;
        self.unrecorded += other.unrecorded;
    }

    fn since(self, earlier: Tally) -> Tally {
        Tally {
            attempted: self.attempted - earlier.attempted,
            delivered: self.delivered - earlier.delivered,
            disabled: self.disabled - earlier.disabled,
            unrecorded: self.unrecorded - earlier.unrecorded,
        }
    }
}

/// Attempts that ended but could not be recorded (the store failed; logged when it happened).
#[derive(Debug, thiserror::Error)]
#[error(
    "{attempts} webhook attempts could not be recorded; their deliveries are tried again when the lease ends"
)]
pub struct Unrecorded {
    /// How many.
    pub attempts: usize,
}

/// What one [`Deliverer::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The deliveries it asked the store for: the free places, at most [`BATCH`].
    pub asked: usize,
    /// The deliveries it got, and started.
    pub taken: usize,
}

/// An attempt that ended, and the place it holds until it is recorded.
struct Ended {
    attempt: (ClaimedDelivery, Attempt, NextStep),
    place: OwnedSemaphorePermit,
}

/// One instance's deliveries: at most its number of places in flight, each recorded as it
/// ends by a task of its own. Dropping it leaves the attempts in flight to end and be recorded
/// (while the runtime runs: those cut short by a shutdown are sent again when their lease
/// ends).
pub struct Deliverer {
    state: AppState,
    client: Client,
    places: Arc<Semaphore>,
    capacity: usize,
    ended: mpsc::UnboundedSender<Ended>,
    recorded: watch::Receiver<Tally>,
    settled: Tally,
}

impl Deliverer {
    /// A deliverer with [`PLACES`] places.
    pub fn new(state: AppState, client: Client) -> Self {
        Deliverer::with_places(state, client, PLACES)
    }

    /// A deliverer with `places` places (at least one).
    pub fn with_places(state: AppState, client: Client, places: usize) -> Self {
        let capacity = places.max(1);
        let (ended, queue) = mpsc::unbounded_channel();
        let (tally, recorded) = watch::channel(Tally::default());
        tokio::spawn(recording::record_as_they_end(state.clone(), queue, tally));
        Deliverer {
            state,
            client,
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            ended,
            recorded,
            settled: Tally::default(),
        }
    }

    /// Claims due deliveries into the free places (at most [`BATCH`]) and starts each; they
    /// are recorded as they end.
    pub async fn claim(&mut self) -> Result<Claim, StoreError> {
        let asked = self.places.available_permits().min(BATCH as usize);
        let held = u32::try_from(asked)
            .ok()
            .filter(|count| *count > 0)
            .and_then(|count| self.places.clone().try_acquire_many_owned(count).ok());
        let Some(mut held) = held else {
            return Ok(Claim { asked: 0, taken: 0 });
        };
        let now = self.state.now();
        let lease_until = Timestamp(now.as_millis() + LEASE.as_millis() as i64);
        // On an error the places held go back as `held` drops.
        let claimed = self
            .state
            .store
            .claim_deliveries(now, lease_until, held.num_permits() as u32)
            .await?;
        let taken = claimed.len();
        for delivery in claimed {
            // The store took at most what was asked, so each delivery has its place; the
            // places of the deliveries not found go back as `held` drops.
            let Some(place) = held.split(1) else {
                break;
            };
            let (state, client, ended) =
                (self.state.clone(), self.client.clone(), self.ended.clone());
            tokio::spawn(async move {
                let attempt = attempt(&state, &client, delivery).await;
                // The recorder lives as long as a sender does, unless it panicked.
                if ended.send(Ended { attempt, place }).is_err() {
                    tracing::error!(
                        "the webhook attempt recorder stopped; attempts are not recorded, and their deliveries are sent again when their leases end"
                    );
                }
            });
        }
        Ok(Claim { asked, taken })
    }

    /// How many attempts are in flight (claimed, not yet recorded).
    pub fn in_flight(&self) -> usize {
        self.capacity - self.places.available_permits()
    }

    /// Waits until a place is free.
    pub async fn place_freed(&self) {
        // This deliverer never closes its semaphore, so the acquisition cannot fail.
        drop(self.places.acquire().await);
    }

    /// What the attempts recorded so far came to, changed as each recording commits.
    pub fn recorded(&self) -> watch::Receiver<Tally> {
        self.recorded.clone()
    }

    /// Waits until every attempt started has ended and been recorded; what they came to since
    /// the last time this was asked.
    pub async fn settled(&mut self) -> Result<Tally, Unrecorded> {
        let capacity = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        // Every place is free once every attempt is recorded (this deliverer never closes
        // its semaphore, so the acquisition cannot fail).
        drop(self.places.acquire_many(capacity).await);
        let now = *self.recorded.borrow();
        let since = now.since(self.settled);
        self.settled = now;
        match since.unrecorded {
            0 => Ok(since),
            attempts => Err(Unrecorded { attempts }),
        }
    }
}

/// One attempt of one delivery, and what follows it (recorded with the others that ended
/// meanwhile).
async fn attempt(
    state: &AppState,
    client: &Client,
    delivery: ClaimedDelivery,
) -> (ClaimedDelivery, Attempt, NextStep) {
    let at = state.now();
    let attempt = send::send(state, client, &delivery, at).await;
    let delivered = attempt.outcome == "delivered";
    let next = if delivered {
        NextStep::Delivered
    } else {
        after_failure(delivery.event_at, delivery.attempts + 1, at)
    };
    if delivered {
        state.metrics.webhooks_delivered.inc();
    } else {
        state.metrics.webhook_failures.inc();
        tracing::info!(
            endpoint = %delivery.endpoint.id,
            event = %delivery.event_id,
            outcome = %attempt.outcome,
            status = ?attempt.status,
            "webhook delivery failed"
        );
    }
    (delivery, attempt, next)
}

/// What the worker waits for before it claims again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing: the last claim took something, so more may be due.
    Now,
    /// A recording (which frees places, and an endpoint's share), a commit or [`POLL`].
    Poll,
    /// A place freed: every place is taken.
    PlaceFreed,
    /// A second: the store failed.
    Retry,
}

/// Runs [`Deliverer::claim`] until shutdown: again at once after a claim that took
/// something; when a place frees up after one that found none free; otherwise when an attempt
/// is recorded (places, and an endpoint's share, are free again), when a key change commits
/// (its events are in the outbox) or after [`POLL`]; after a second when the store failed.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let client = match client(state.policy.local_dev) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook delivery cannot build its HTTP client; events wait in the outbox");
            return None;
        }
    };
    Some(run(Deliverer::new(state, client), shutdown))
}

/// The loop of [`spawn`], over a given deliverer.
pub fn run(mut deliverer: Deliverer, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    // A committed key change announces a new feed head; its events are due at once.
    let mut heads = deliverer.state.store.feed_heads();
    let mut recorded = deliverer.recorded();
    tokio::spawn(async move {
        loop {
            let next = match deliverer.claim().await {
                Ok(claim) if claim.asked == 0 => Next::PlaceFreed,
                // Taken something: more may be due (a claim takes at most `BATCH`).
                Ok(claim) if claim.taken > 0 => Next::Now,
                Ok(_) => Next::Poll,
                Err(error) => {
                    tracing::warn!(%error, "webhook delivery could not read the outbox; retrying");
                    Next::Retry
                }
            };
            let pause = match next {
                Next::Now => Some(Duration::ZERO),
                Next::Poll => Some(POLL),
                Next::Retry => Some(Duration::from_secs(1)),
                Next::PlaceFreed => None,
            };
            let committed = async {
                if heads.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let one_recorded = async {
                // The recorder lives as long as the deliverer: this never ends in error while
                // the loop runs, but it must not spin if it did.
                if recorded.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
                () = committed, if next == Next::Poll => {}
                () = one_recorded, if next == Next::Poll => {}
                () = deliverer.place_freed(), if next == Next::PlaceFreed => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return;
            }
        }
    })
}
