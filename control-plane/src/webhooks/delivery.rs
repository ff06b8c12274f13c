//! The delivery worker: claims due deliveries from the outbox, posts each signed event to its
//! endpoint, records the attempt, and schedules the next one ([`super::backoff`]).
//!
//! A claim is a lease of [`LEASE`]: an instance that dies mid-delivery leaves its claims to be
//! taken again when the lease ends, so an event committed before a crash is still delivered
//! (at least once: a receiver drops repeats by `webhook-id`). Every instance may run this;
//! the store's claim gives each delivery to one of them at a time.
//!
//! One organization's slow endpoints do not hold up the others' deliveries: a round waits
//! [`ROUND_PATIENCE`] for its attempts, records those that ended, and leaves the rest (an
//! endpoint slow to answer, up to [`ATTEMPT_TIMEOUT`]) to finish and be recorded in the
//! background ([`InFlight`]) while the next rounds go on; and the claim takes no delivery of
//! an endpoint that has [`ENDPOINT_IN_FLIGHT`](crate::store::webhooks::ENDPOINT_IN_FLIGHT)
//! deliveries in flight already, so those rounds go to other endpoints. At most some
//! `BATCH × (ATTEMPT_TIMEOUT / ROUND_PATIENCE + 1)` attempts are in flight at once per
//! instance.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use keyplane_shared::Timestamp;
use reqwest::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::address_guard::{GuardedResolver, literal_allowed};
use super::backoff::{DISABLE_AFTER_MS, RETRY_WINDOW_MS, after_failure};
use crate::error::error_chain;
use crate::state::AppState;
use crate::store::{Attempt, ClaimedDelivery, FailureStreak, NextStep, StoreError};

/// How long a claim is held: longer than an attempt can take.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries claimed (and sent concurrently) per round.
pub const BATCH: u32 = 32;
/// How long a round waits for its attempts before the next round may start; the attempts
/// still running then are recorded when they end ([`InFlight`]).
pub const ROUND_PATIENCE: Duration = Duration::from_secs(1);
/// How often the outbox is looked at when the last round found nothing.
pub const POLL: Duration = Duration::from_millis(200);
/// How much of an answer is kept with the attempt, in bytes.
pub const RESPONSE_HEAD: usize = 256;

/// The HTTP client deliveries use: names resolved through the address guard, no redirects,
/// no proxy, bounded time.
pub fn client(local_dev: bool) -> Result<Client, reqwest::Error> {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .dns_resolver(GuardedResolver { local_dev })
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT)
        .user_agent("Keyplane-Webhooks/1")
        .build()
}

/// What one round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Attempts made and recorded.
    pub attempted: usize,
    /// Of which delivered.
    pub delivered: usize,
    /// Endpoints disabled for failing too long.
    pub disabled: usize,
    /// The attempts still running after [`ROUND_PATIENCE`], recorded when they end.
    pub in_flight: Option<InFlight>,
}

impl Round {
    /// How many attempts the round made, those still in flight included.
    pub fn claimed(&self) -> usize {
        self.attempted + self.in_flight.as_ref().map_or(0, |rest| rest.count)
    }

    /// This round once its attempts still in flight have ended and been recorded too.
    pub async fn settled(mut self) -> Result<Round, SettleError> {
        if let Some(rest) = self.in_flight.take() {
            let rest = rest.recorded.await??;
            self.attempted += rest.attempted;
            self.delivered += rest.delivered;
            self.disabled += rest.disabled;
        }
        Ok(self)
    }
}

/// Why [`Round::settled`] could not tell how a round's slow attempts ended.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Recording them failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task recording them stopped (it panicked or was aborted).
    #[error("recording the slow attempts stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// A round's attempts that outlasted [`ROUND_PATIENCE`]: they run on, and are recorded
/// together when the last ends (each within [`ATTEMPT_TIMEOUT`]), under their claims' lease.
/// Dropping this leaves them to run and be recorded all the same.
#[derive(Debug)]
pub struct InFlight {
    /// How many.
    pub count: usize,
    recorded: JoinHandle<Result<Round, StoreError>>,
}

/// One round: claims the due deliveries (one batch), sends them concurrently, and records in
/// one transaction the attempts that ended within [`ROUND_PATIENCE`]; the others are
/// recorded when they end ([`Round::in_flight`]).
pub async fn deliver_due(state: &AppState, client: &Client) -> Result<Round, StoreError> {
    let now = state.now();
    let lease_until = Timestamp(now.as_millis() + LEASE.as_millis() as i64);
    let claimed = state
        .store
        .claim_deliveries(now, lease_until, BATCH)
        .await?;
    // Each attempt owns what it uses, so the ones still running can move to a task of their own.
    let mut running: FuturesUnordered<_> = claimed
        .into_iter()
        .map(|delivery| {
            let (state, client) = (state.clone(), client.clone());
            async move { attempt(&state, &client, delivery).await }
        })
        .collect();
    let mut ended = Vec::with_capacity(running.len());
    let patience = tokio::time::sleep(ROUND_PATIENCE);
    tokio::pin!(patience);
    loop {
        tokio::select! {
            next = running.next() => match next {
                Some(attempt) => ended.push(attempt),
                None => break,
            },
            () = &mut patience => break,
        }
    }
    // The attempts still running go on in their own task first, so that they are polled (their
    // answers read, their timeouts kept) while the ended ones are recorded, and live on if
    // that recording fails.
    let in_flight = (!running.is_empty()).then(|| {
        let count = running.len();
        let state = state.clone();
        let recorded = tokio::spawn(async move {
            let ended: Vec<_> = running.collect().await;
            let recorded = record(&state, ended).await;
            if let Err(error) = &recorded {
                tracing::warn!(%error, "recording slow webhook attempts failed; their deliveries are tried again when the lease ends");
            }
            recorded
        });
        InFlight { count, recorded }
    });
    let mut round = record(state, ended).await?;
    round.in_flight = in_flight;
    Ok(round)
}

/// Records `attempts` (and what follows each) in one transaction.
async fn record(
    state: &AppState,
    attempts: Vec<(ClaimedDelivery, Attempt, NextStep)>,
) -> Result<Round, StoreError> {
    let mut round = Round::default();
    if attempts.is_empty() {
        return Ok(round);
    }
    for (_, _, next) in &attempts {
        round.attempted += 1;
        round.delivered += usize::from(*next == NextStep::Delivered);
    }
    let disabled = state
        .store
        .record_attempts(
            attempts,
            FailureStreak {
                disable_after_ms: DISABLE_AFTER_MS,
                // Retries of one event come at most 6 hours apart within its 24 hours: a day
                // without any attempt means the endpoint was idle, not failing.
                idle_gap_ms: RETRY_WINDOW_MS,
            },
        )
        .await?;
    round.disabled = disabled.iter().filter(|now| **now).count();
    if round.disabled > 0 {
        tracing::warn!(
            endpoints = round.disabled,
            "webhook endpoints disabled after failing for 5 days"
        );
    }
    Ok(round)
}

/// One attempt of one delivery, and what follows it (recorded with the round's others).
async fn attempt(
    state: &AppState,
    client: &Client,
    delivery: ClaimedDelivery,
) -> (ClaimedDelivery, Attempt, NextStep) {
    let at = state.now();
    let attempt = send(state, client, &delivery, at).await;
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

/// Posts the event; how it went.
async fn send(
    state: &AppState,
    client: &Client,
    delivery: &ClaimedDelivery,
    at: Timestamp,
) -> Attempt {
    let started = Instant::now();
    let finish = |status: Option<u16>, outcome: &str, response: String| Attempt {
        at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        status,
        outcome: outcome.to_owned(),
        response,
    };
    let url = match reqwest::Url::parse(&delivery.endpoint.url) {
        Ok(url) => url,
        Err(error) => return finish(None, "invalid_url", error.to_string()),
    };
    let host = url.host_str().unwrap_or_default();
    if !literal_allowed(host, state.policy.local_dev) {
        return finish(
            None,
            "refused_address",
            format!("{host} is not a public address"),
        );
    }
    let id = delivery.event_id.to_string();
    let timestamp = at.as_millis().div_euclid(1000);
    let signature = state.webhook_secrets.signature_header(
        &delivery.endpoint.salt,
        &delivery.endpoint.previous,
        (&id, timestamp, &delivery.body),
        at,
    );
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            let outcome = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect_error"
            } else {
                "request_error"
            };
            // With its causes (`no public address` and the like), as much as is kept.
            let text = error_chain(&error).chars().take(RESPONSE_HEAD).collect();
            return finish(None, outcome, text);
        }
    };
    let status = response.status();
    let mut head = Vec::new();
    while head.len() < RESPONSE_HEAD {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    head.truncate(RESPONSE_HEAD);
    let text = String::from_utf8_lossy(&head).into_owned();
    let outcome = if status.is_success() {
        "delivered"
    } else {
        "http_error"
    };
    finish(Some(status.as_u16()), outcome, text)
}

/// Runs [`deliver_due`] until shutdown: again at once after a full batch or when a key change
/// commits (its events are in the outbox), after [`POLL`] otherwise (and after a second when
/// the store failed).
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let client = match client(state.policy.local_dev) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook delivery cannot build its HTTP client; events wait in the outbox");
            return None;
        }
    };
    // A committed key change announces a new feed head; its events are due at once.
    let mut heads = state.store.feed_heads();
    Some(tokio::spawn(async move {
        loop {
            let pause = match deliver_due(&state, &client).await {
                Ok(round) if round.claimed() >= BATCH as usize => Duration::ZERO,
                Ok(_) => POLL,
                Err(error) => {
                    tracing::warn!(%error, "webhook delivery could not read the outbox; retrying");
                    Duration::from_secs(1)
                }
            };
            let committed = async {
                if heads.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = committed => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return;
            }
        }
    }))
}
