//! The pusher: sends every committed change to every registered edge, at once.
//!
//! A manager task wakes on every committed mutation ([`AppState::feed_changed`]) and once a
//! second (changes made by other control-plane instances, edges registered meanwhile), reloads
//! the edge registry and wakes one worker per edge. A worker sends the changes after what its
//! edge acknowledged (at most [`BATCH`] per request, KPCB body, signed) to
//! `<url>/__keyplane/sync` and records the `{"applied_seq": N}` it answers; an edge that answers
//! a lower sequence than it was sent (a gap) is sent the rest from there. Failures are retried
//! with exponential backoff (100 ms doubling to 30 s, with jitter) and recorded in the registry.
//! Each edge has its own worker, so a slow or dead edge delays no other; the API never waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::encode_changes;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Most changes sent in one push.
pub const BATCH: u64 = 1_000;
/// How long a push may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_secs(1);

/// Starts the pusher; it stops when `shutdown` turns true.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(manage(state, shutdown))
}

struct Worker {
    url: String,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

async fn manage(state: AppState, mut shutdown: watch::Receiver<bool>) {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .connect_timeout(PUSH_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "the pusher cannot build its HTTP client; edges rely on pulls");
            return;
        }
    };
    let mut workers: HashMap<String, Worker> = HashMap::new();
    loop {
        match state.store.edges().await {
            Ok(edges) => {
                workers.retain(|name, worker| {
                    let keep = edges
                        .iter()
                        .any(|edge| &edge.name == name && edge.url == worker.url);
                    if !keep {
                        worker.task.abort();
                    }
                    keep
                });
                for edge in edges {
                    let worker = workers.entry(edge.name.clone()).or_insert_with(|| {
                        let wake = Arc::new(Notify::new());
                        let task = tokio::spawn(push_to_edge(
                            state.clone(),
                            client.clone(),
                            edge.name.clone(),
                            edge.url.clone(),
                            edge.acked_seq.max(edge.reported_seq),
                            wake.clone(),
                        ));
                        Worker {
                            url: edge.url.clone(),
                            wake,
                            task,
                        }
                    });
                    worker.wake.notify_one();
                }
            }
            Err(error) => tracing::warn!(%error, "the pusher could not read the edge registry"),
        }
        tokio::select! {
            _ = state.feed_changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for worker in workers.into_values() {
        worker.task.abort();
    }
}

#[derive(Deserialize)]
struct Ack {
    applied_seq: u64,
}

/// Keeps one edge up to date, forever.
async fn push_to_edge(
    state: AppState,
    client: reqwest::Client,
    name: String,
    url: String,
    mut acked: u64,
    wake: Arc<Notify>,
) {
    let target = format!("{}/__keyplane/sync", url.trim_end_matches('/'));
    let mut backoff = FIRST_BACKOFF;
    loop {
        let head = match state.store.feed_head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "the pusher could not read the feed head");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        if acked >= head {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            continue;
        }
        let outcome = match state
            .store
            .changes_after(acked, BATCH.min(head - acked))
            .await
        {
            Ok(changes) => send(&state, &client, &target, &encode_changes(&changes)).await,
            Err(error) => Err(format!("reading the change log: {error}")),
        };
        let now = state.now();
        match outcome {
            Ok(applied) => {
                acked = applied;
                backoff = FIRST_BACKOFF;
                state.metrics.pushes_succeeded.inc();
                if let Err(error) = state
                    .store
                    .record_push(&name, Some(applied), None, now)
                    .await
                {
                    tracing::warn!(%error, edge = %name, "recording a push failed");
                }
            }
            Err(error) => {
                state.metrics.pushes_failed.inc();
                tracing::warn!(edge = %name, %error, retry_in_ms = backoff.as_millis() as u64, "push failed");
                if let Err(error) = state
                    .store
                    .record_push(&name, None, Some(&error), now)
                    .await
                {
                    tracing::warn!(%error, edge = %name, "recording a push failure failed");
                }
                tokio::time::sleep(with_jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One signed push; the edge's applied sequence, or why it failed (never the body).
async fn send(
    state: &AppState,
    client: &reqwest::Client,
    target: &str,
    body: &[u8],
) -> Result<u64, String> {
    let now_secs = state.now().as_millis().div_euclid(1000);
    let signature = sync::sign_now(
        &state.edge_secret,
        now_secs,
        &SignedRequest {
            method: "POST",
            path_and_query: "/__keyplane/sync",
            body,
        },
    )
    .map_err(|error| format!("CSPRNG: {error}"))?;
    let response = client
        .post(target)
        .header(sync::SIGNATURE_HEADER, signature)
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|error| format!("sending: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the edge answered {status}"));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|error| format!("reading the edge's answer: {error}"))?;
    let ack: Ack = serde_json::from_slice(&bytes)
        .map_err(|error| format!("the edge's answer is not {{\"applied_seq\": N}}: {error}"))?;
    Ok(ack.applied_seq)
}

/// `delay` plus up to a quarter more, so edges that failed together do not retry in lockstep.
fn with_jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    delay + delay / 4 * u32::from(byte[0]) / 255
}
