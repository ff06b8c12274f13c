//! The pusher: sends every committed change to every registered edge, at once.
//!
//! A manager task wakes whenever the store commits a change ([`crate::store::Store::feed_heads`]:
//! whichever way it was made, an API call, the CLI or a background task) and once a second
//! (changes made by other control-plane instances, edges registered meanwhile), reloads
//! the edge registry and wakes one worker per edge. A worker sends the changes after what its
//! edge acknowledged (at most [`BATCH`] per request and [`sync::MAX_CHANGES_BYTES`] of KPCB
//! body, signed) to
//! `<url>/__keyplane/sync` and records the `{"applied_seq": N}` it answers; an edge that answers
//! a lower sequence than it was sent (a gap) is sent the rest from there at once (and with
//! backoff if it then still applies nothing). Failures are retried with exponential backoff
//! (100 ms doubling to 30 s, with jitter) and recorded in the registry. Each edge has its own
//! worker, so a slow or dead edge delays no other; the API never waits for a push.
//!
//! Each push is bound to the edge it is meant for and to the feed's lineage: its signed query
//! names the edge, the feed's history, the sequence it sends from and the feed chain there
//! (`/__keyplane/sync?edge=…&history=…&after=…&chain=…`). An edge refuses a push named for
//! another edge (421 `misdirected_push`: two edges given one URL), and one whose chain at that
//! sequence is not its own (409 `history_diverged`: it reloads a snapshot by itself), and
//! answers 503 `table_reloading` while it replaces its table; each shows as this edge's push
//! error in the registry, and the push is retried with backoff.
//!
//! Nothing here logs a request or response body.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::encode_changes_within;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::error_chain;
use crate::state::AppState;
use crate::store::{EdgeRecord, StoreError};

/// Most changes sent in one push.
pub const BATCH: u64 = 1_000;
/// How long a push may take, connection included.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The path pushes are sent to, under the edge's URL (and the path they are signed over).
pub const SYNC_PATH: &str = "/__keyplane/sync";
/// First retry delay after a failed push.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the registry and the feed head are read without a wake-up.
pub const TICK: Duration = Duration::from_secs(1);
/// Largest acknowledgement body read from an edge.
const MAX_ACK_BYTES: usize = 4096;

/// Starts the pusher; it stops (with every per-edge worker) when `shutdown` turns true or the
/// returned task is aborted.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    spawn_with_tick(state, shutdown, TICK)
}

/// [`spawn`] with another tick than [`TICK`] (tests: an hour-long tick shows that a change is
/// pushed because the store announced it, not because the tick came).
pub fn spawn_with_tick(
    state: AppState,
    shutdown: watch::Receiver<bool>,
    tick: Duration,
) -> JoinHandle<()> {
    tokio::spawn(manage(state, shutdown, tick))
}

/// Why a push failed. Never holds a body.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The change log could not be read.
    #[error("reading the change log: {0}")]
    Log(#[source] StoreError),
    /// No nonce could be drawn for the signature.
    #[error("signing: {0}")]
    Sign(String),
    /// Connecting, sending or receiving failed, or took longer than [`PUSH_TIMEOUT`].
    #[error("{0}")]
    Transport(String),
    /// The edge answered with a status other than 200 (and the error code of its body).
    #[error("the edge answered {status} ({code})")]
    Status {
        /// The status.
        status: reqwest::StatusCode,
        /// `error.code` of its JSON body, or `-`.
        code: String,
    },
    /// The edge's answer is not `{"applied_seq": N}`.
    #[error("the edge's answer is not {{\"applied_seq\": N}}")]
    Answer,
    /// The edge acknowledged the same sequence twice without applying what was sent after it.
    #[error("the edge stays at sequence {0} and applies nothing sent after it")]
    Stalled(u64),
}

impl PushError {
    fn transport(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            return PushError::Transport(format!("no answer within {PUSH_TIMEOUT:?}"));
        }
        // reqwest's own message is generic ("error sending request"); the cause says why.
        PushError::Transport(error_chain(error))
    }

    /// The metric outcome.
    fn outcome(&self) -> &'static str {
        match self {
            PushError::Stalled(_) => "gap",
            _ => "failed",
        }
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Worker {
    url: String,
    wake: Arc<Notify>,
    _task: AbortOnDrop,
}

async fn manage(state: AppState, mut shutdown: watch::Receiver<bool>, tick: Duration) {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .connect_timeout(PUSH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "the pusher cannot build its HTTP client; edges rely on pulls");
            return;
        }
    };
    // Dropping a worker aborts its task: on shutdown, and when this task is aborted.
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut heads = state.store.feed_heads();
    loop {
        heads.mark_unchanged();
        match state.store.edges().await {
            Ok(edges) => reconcile(&state, &client, &mut workers, edges, tick),
            Err(error) => tracing::warn!(%error, "the pusher could not read the edge registry"),
        }
        tokio::select! {
            // A store that stopped announcing leaves the tick.
            Ok(()) = heads.changed() => {}
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!(edges = workers.len(), "the pusher stopped");
}

/// Starts a worker for each new edge (or edge whose URL changed), stops those of removed
/// edges, and wakes them all.
fn reconcile(
    state: &AppState,
    client: &reqwest::Client,
    workers: &mut HashMap<String, Worker>,
    edges: Vec<EdgeRecord>,
    tick: Duration,
) {
    workers.retain(|name, worker| {
        let keep = edges
            .iter()
            .any(|edge| &edge.name == name && edge.url == worker.url);
        if !keep {
            tracing::info!(edge = %name, "no longer pushing to this edge (removed or moved)");
            state.metrics.forget_edge(name);
        }
        keep
    });
    for edge in edges {
        let worker = workers.entry(edge.name.clone()).or_insert_with(|| {
            tracing::info!(edge = %edge.name, url = %edge.url, acked = edge.acked_seq, "pushing to edge");
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(push_to_edge(
                state.clone(),
                client.clone(),
                edge.name.clone(),
                edge.url.clone(),
                edge.acked_seq.max(edge.reported_seq),
                wake.clone(),
                tick,
            ));
            Worker {
                url: edge.url.clone(),
                wake,
                _task: AbortOnDrop(task),
            }
        });
        worker.wake.notify_one();
    }
}

#[derive(Deserialize)]
struct Ack {
    applied_seq: u64,
}

/// Keeps one edge up to date, until aborted.
async fn push_to_edge(
    state: AppState,
    client: reqwest::Client,
    name: String,
    url: String,
    mut acked: u64,
    wake: Arc<Notify>,
    tick: Duration,
) {
    let target = url.trim_end_matches('/').to_owned();
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    // Consecutive acknowledgements that applied nothing of what was sent.
    let mut stalls = 0u32;
    loop {
        let head = match state.store.feed_head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, edge = %name, "the pusher could not read the feed head");
                tokio::time::sleep(tick).await;
                continue;
            }
        };
        state
            .metrics
            .set_edge_lag(&name, head.saturating_sub(acked));
        if acked >= head {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
            continue;
        }
        let sent_from = acked;
        let outcome = push_once(&state, &client, &target, &name, sent_from, head).await;
        let outcome = match outcome {
            Ok((applied, sent_to)) if applied < sent_to && applied <= sent_from => {
                // The edge has a gap (or lost its table): resend from what it has, at once the
                // first time; if it then still applies nothing, it is failing.
                acked = applied;
                stalls += 1;
                if stalls > 1 {
                    Err(PushError::Stalled(applied))
                } else {
                    Ok((applied, sent_to))
                }
            }
            Ok((applied, sent_to)) => {
                // An edge past the head (it holds another history, or this database was
                // restored from a backup) is pushed again from the head: the chain sent with
                // the next change tells it to reload, where waiting for the head to pass it
                // would leave it to its pulls.
                acked = applied.min(head);
                stalls = 0;
                Ok((applied, sent_to))
            }
            Err(error) => Err(error),
        };
        let now = state.now();
        match outcome {
            Ok((applied, sent_to)) => {
                state
                    .metrics
                    .push(if applied < sent_to { "gap" } else { "acked" });
                if applied < sent_to {
                    tracing::info!(edge = %name, applied, sent_to, "the edge has a gap; resending from its sequence");
                }
                if std::mem::take(&mut failing) {
                    tracing::info!(edge = %name, applied, "pushes to the edge work again");
                }
                backoff = FIRST_BACKOFF;
                if let Err(error) = state
                    .store
                    .record_push(&name, Some(applied), None, now)
                    .await
                {
                    tracing::warn!(%error, edge = %name, "recording a push failed");
                }
            }
            Err(error) => {
                state.metrics.push(error.outcome());
                failing = true;
                let delay = with_jitter(backoff);
                tracing::warn!(
                    edge = %name,
                    %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "push failed"
                );
                let acked_now = matches!(error, PushError::Stalled(_)).then_some(acked);
                if let Err(error) = state
                    .store
                    .record_push(&name, acked_now, Some(&error.to_string()), now)
                    .await
                {
                    tracing::warn!(%error, edge = %name, "recording a push failure failed");
                }
                tokio::time::sleep(delay).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends the changes after `after` (up to `head`, at most [`BATCH`] and
/// [`sync::MAX_CHANGES_BYTES`]) to edge `name` at `base_url`; the edge's applied sequence and
/// the last sequence sent.
async fn push_once(
    state: &AppState,
    client: &reqwest::Client,
    base_url: &str,
    name: &str,
    after: u64,
    head: u64,
) -> Result<(u64, u64), PushError> {
    let changes = state
        .store
        .changes_within(after, BATCH.min(head - after), sync::MAX_CHANGES_BYTES)
        .await
        .map_err(PushError::Log)?;
    let chain = state.store.chain_at(after).await.map_err(PushError::Log)?;
    let (sent, body) = encode_changes_within(&changes, sync::MAX_CHANGES_BYTES);
    let sent_to = sent.last().map_or(after, |change| change.seq);
    let path = push_path(
        name,
        &state.store.feed_history().to_string(),
        after,
        &chain.to_hex(),
    );
    let applied = send(state, client, base_url, &path, body).await?;
    Ok((applied, sent_to))
}

/// The path and query of a push to edge `name` of the changes after `after` (signed whole).
pub fn push_path(name: &str, history: &str, after: u64, chain: &str) -> String {
    // Edge names are [A-Za-z0-9_-], history ids base62 and chains hex: nothing to encode.
    format!("{SYNC_PATH}?edge={name}&history={history}&after={after}&chain={chain}")
}

/// One signed push of `body` to `<base_url><path>`; the edge's applied sequence.
async fn send(
    state: &AppState,
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<u64, PushError> {
    let now_secs = state.now().as_millis().div_euclid(1000);
    let signature = sync::sign_now(
        &state.edge_secret,
        now_secs,
        &SignedRequest {
            method: "POST",
            path_and_query: path,
            body: &body,
        },
    )
    .map_err(|error| PushError::Sign(error.to_string()))?;
    let mut response = client
        .post(format!("{base_url}{path}"))
        .header(sync::SIGNATURE_HEADER, signature)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|error| PushError::transport(&error))?;
    let status = response.status();
    let mut answer = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| PushError::transport(&error))?
    {
        answer.extend_from_slice(&chunk);
        if answer.len() > MAX_ACK_BYTES {
            return Err(PushError::Answer);
        }
    }
    if status != reqwest::StatusCode::OK {
        let code = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|value| value["error"]["code"].as_str().map(str::to_owned))
            .filter(|code| {
                code.len() <= 64 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
            .unwrap_or_else(|| "-".to_owned());
        return Err(PushError::Status { status, code });
    }
    let ack: Ack = serde_json::from_slice(&answer).map_err(|_| PushError::Answer)?;
    Ok(ack.applied_seq)
}

/// Between three quarters of `delay` and all of it, so edges that failed together do not retry
/// in lockstep (and the cap is never exceeded).
fn with_jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    delay - delay / 4 * u32::from(byte[0]) / 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_below_the_delay() {
        for _ in 0..100 {
            let delay = with_jitter(MAX_BACKOFF);
            assert!(
                delay <= MAX_BACKOFF && delay >= MAX_BACKOFF * 3 / 4,
                "{delay:?}"
            );
        }
    }
}
