//! Usage reporting: every decision becomes a [`UsageEvent`], buffered in the isolate and
//! shipped to the control plane in signed batches, in the background.
//!
//! The request path only appends to the buffer ([`record`]) and, when no flusher is running,
//! starts one under `waitUntil` ([`claim_flush`], [`flush`]). The flusher sends what is
//! buffered, then each further batch when it is due (`due_in`: a full batch at once, a
//! partial one `USAGE_FLUSH_MS` after the previous send), so no event waits for another
//! request to be shipped; it stops when the buffer is empty or after [`FLUSH_BUDGET_MS`]
//! (under the platform's limit for work after the response; a retry due later is made at the
//! budget's end, as its last send), and the next request starts another.
//! Events leave the buffer only when the control plane acknowledged them, so a
//! control-plane outage loses nothing until the buffer holds `USAGE_BUFFER_MAX` events; past
//! that the oldest are dropped and counted ([`Stats::dropped`], in `/__keyplane/status`).
//! A send counts as delivered only on a 2xx whose receipt counts every event of the batch
//! (redirects are not followed; 10 s without an answer is a failure). Failed sends back off
//! (1 s doubling to 30 s), retried by the flusher within its budget, and after that by a
//! flusher the first request after the backoff starts.
//!
//! Events that name no key (missing, malformed or unknown key; public routes) are counted
//! here but not shipped: the usage API is per key, and such requests carry nothing to
//! attribute them to.
//!
//! Events of requests the edge refused (401 / 403 / 429 of a known key) are rate-limited per
//! key like requests are, at the edge's default limit: past it they are counted
//! ([`Stats::suppressed`]) instead of buffered, so one key holder hammering the edge with a
//! revoked or throttled key cannot fill the buffer or the control plane's usage table.
//! Admitted requests are bounded by the key's own limit already.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::usage::{MAX_BATCH_EVENTS, USAGE_PATH, UsageEvent, UsageReceipt};
use keyplane_shared::{RateLimit, RateLimiter};
use serde::Serialize;
use thiserror::Error;
use worker::{
    AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    console_error, web_sys,
};

use crate::claim::{Claim, ClaimSlot, HoldsClaim};
use crate::settings::Settings;

const FIRST_BACKOFF_MS: f64 = 1_000.0;
const MAX_BACKOFF_MS: f64 = 30_000.0;
/// Longest one flusher keeps sending and waiting, in ms: Cloudflare cancels `waitUntil` work
/// 30 s after the response.
pub const FLUSH_BUDGET_MS: f64 = 20_000.0;
/// Longest one send may take before it counts as failed, in ms.
const SEND_TIMEOUT_MS: u32 = 10_000;
/// A flush claim older than this belongs to a flusher the runtime cancelled without dropping
/// it (its future is simply never polled again); a new flusher may start.
const STALE_CLAIM_MS: f64 = 2.0 * FLUSH_BUDGET_MS + MAX_BACKOFF_MS;

/// What this isolate has reported, for `/__keyplane/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events waiting to be sent (the buffer's length when read).
    pub buffered: usize,
    /// Events the control plane acknowledged.
    pub sent: u64,
    /// Events dropped because the buffer was full (or a batch was refused as malformed).
    pub dropped: u64,
    /// Decisions that named no key (not shipped).
    pub unattributed: u64,
    /// Refusals of a known key past the per-key bound on refusal events (not shipped).
    pub suppressed: u64,
    /// Failed sends since the last success.
    pub failures: u32,
}

/// The isolate's buffer of usage events (reached through this module's functions).
#[derive(Default)]
pub struct Buffer {
    /// Events with their serial number, oldest first.
    events: VecDeque<(u64, UsageEvent)>,
    next_serial: u64,
    stats: Stats,
    /// The running flusher's claim.
    claim: ClaimSlot,
    last_flush_ms: f64,
    retry_at_ms: f64,
    /// The per-key bound on events of refused requests.
    refusals: RateLimiter,
    /// When its idle entries were last forgotten (ms).
    refusals_pruned_ms: i64,
}

thread_local! {
    static BUFFER: RefCell<Buffer> = RefCell::new(Buffer::default());
}

/// Keys tracked by the refusal bound past which its idle entries are forgotten, at most once
/// every [`PRUNE_REFUSALS_EVERY_MS`] (a prune walks every entry).
const PRUNE_REFUSALS_AT: usize = 10_000;
const PRUNE_REFUSALS_EVERY_MS: i64 = 10_000;

/// Appends one decision; drops the oldest event when the buffer is full. `refusal_limit` is
/// the per-key bound for a request the edge refused (`None` for one it admitted).
pub fn record(event: UsageEvent, buffer_max: usize, refusal_limit: Option<RateLimit>) {
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let Some(key_id) = event.key_id else {
            buffer.stats.unattributed += 1;
            return;
        };
        if let Some(limit) = refusal_limit {
            let at = event.at;
            if buffer.refusals.len() >= PRUNE_REFUSALS_AT
                && at.as_millis() - buffer.refusals_pruned_ms >= PRUNE_REFUSALS_EVERY_MS
            {
                buffer.refusals.prune(at);
                buffer.refusals_pruned_ms = at.as_millis();
            }
            if !buffer.refusals.check(key_id, limit, at).allowed {
                buffer.stats.suppressed += 1;
                return;
            }
        }
        let serial = buffer.next_serial;
        buffer.next_serial += 1;
        buffer.events.push_back((serial, event));
        while buffer.events.len() > buffer_max {
            buffer.events.pop_front();
            buffer.stats.dropped += 1;
        }
    });
}

impl HoldsClaim for Buffer {
    fn slot(&mut self) -> &mut ClaimSlot {
        &mut self.claim
    }
}

/// The right to run the flusher, from [`claim_flush`]; released when dropped (also when the
/// runtime drops the flush future half-way), unless a newer flusher took over meanwhile.
pub type FlushClaim = Claim<Buffer>;

/// Claims the flusher when there is something to send, no flusher is running (or the running
/// one's claim is stale) and sends are not backing off after a failure.
pub fn claim_flush(now_ms: f64) -> Option<FlushClaim> {
    Claim::try_take(&BUFFER, now_ms, STALE_CLAIM_MS, |buffer| {
        !buffer.events.is_empty() && now_ms >= buffer.retry_at_ms
    })
}

/// How long until the next batch is due at `now_ms` (`None`: nothing to send): a full batch
/// goes at once, a partial one `flush_ms` after the previous send, and never before the
/// backoff after a failure ends.
fn due_in(now_ms: f64, flush_ms: f64) -> Option<f64> {
    BUFFER.with(|buffer| {
        let buffer = buffer.borrow();
        if buffer.events.is_empty() {
            return None;
        }
        let ready_at = if buffer.events.len() >= MAX_BATCH_EVENTS {
            0.0
        } else {
            buffer.last_flush_ms + flush_ms
        };
        Some((ready_at.max(buffer.retry_at_ms) - now_ms).max(0.0))
    })
}

/// This isolate's reporting figures.
pub fn stats() -> Stats {
    BUFFER.with(|buffer| {
        let buffer = buffer.borrow();
        Stats {
            buffered: buffer.events.len(),
            ..buffer.stats
        }
    })
}

/// Why a batch was not delivered.
#[derive(Debug, Error)]
enum SendError {
    /// Worth retrying: network failure, 5xx, 401 (a secret being rotated), 429.
    #[error("control plane unreachable or failing: {0}")]
    Retry(String),
    /// The control plane refused the batch itself (400 / 413): retrying cannot help.
    #[error("control plane refused the batch: {0}")]
    Refused(u16),
}

impl From<worker::Error> for SendError {
    fn from(error: worker::Error) -> Self {
        SendError::Retry(error.to_string())
    }
}

/// A batch ready to send: the JSON of a `UsageBatch`, with how many events it holds and the
/// serial number of its last.
struct Batch {
    body: Vec<u8>,
    count: usize,
    last_serial: u64,
}

/// The `UsageBatch` wire form, borrowing the buffered events (no copy of them per send).
#[derive(Serialize)]
struct BatchBody<'a> {
    edge: &'a str,
    events: Vec<&'a UsageEvent>,
}

/// The oldest batch in the buffer, from edge `edge` (`None`: the buffer is empty).
fn next_batch(edge: &str) -> Option<Batch> {
    BUFFER.with(|buffer| {
        let buffer = buffer.borrow();
        let events: Vec<&UsageEvent> = buffer
            .events
            .iter()
            .take(MAX_BATCH_EVENTS)
            .map(|(_, event)| event)
            .collect();
        let count = events.len();
        let last_serial = buffer.events.get(count.checked_sub(1)?)?.0;
        // Ids, numbers and strings only: serializing cannot fail.
        let body = serde_json::to_vec(&BatchBody { edge, events }).ok()?;
        Some(Batch {
            body,
            count,
            last_serial,
        })
    })
}

/// Books the outcome of sending the events up to serial `last_serial` at `now_ms`: removes
/// them when delivered (or refused for good), else schedules the retry.
fn settle(outcome: &Result<(), SendError>, last_serial: u64, now_ms: f64) {
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer.last_flush_ms = now_ms;
        match outcome {
            Ok(()) | Err(SendError::Refused(_)) => {
                let before = buffer.events.len();
                while buffer
                    .events
                    .front()
                    .is_some_and(|(serial, _)| *serial <= last_serial)
                {
                    buffer.events.pop_front();
                }
                let removed = (before - buffer.events.len()) as u64;
                if outcome.is_ok() {
                    buffer.stats.sent += removed;
                } else {
                    buffer.stats.dropped += removed;
                }
                buffer.stats.failures = 0;
                buffer.retry_at_ms = 0.0;
            }
            Err(SendError::Retry(_)) => {
                buffer.stats.failures = buffer.stats.failures.saturating_add(1);
                buffer.retry_at_ms = now_ms + backoff_ms(buffer.stats.failures);
            }
        }
    });
}

/// The flusher: sends each batch when it is due (`due_in`) until the buffer is empty, its
/// budget is spent (or the next wait would outlast it), or its claim was given to a newer
/// flusher (this one was taken for cancelled).
pub async fn flush(claim: FlushClaim, settings: &Settings) {
    let now = || worker::Date::now().as_millis() as f64;
    let started_ms = now();
    let mut last_try = false;
    while let Some(wait_ms) = due_in(now(), settings.usage.flush_ms) {
        let left_ms = FLUSH_BUDGET_MS - (now() - started_ms);
        if !claim.is_current() || (left_ms <= 0.0 && !last_try) {
            break;
        }
        if wait_ms > 0.0 && !last_try {
            // A send due after the budget is made at its end instead, as the last: after a
            // long outage the backlog still leaves without waiting for the next request.
            last_try = wait_ms > left_ms;
            Delay::from(Duration::from_millis(wait_ms.min(left_ms).ceil() as u64)).await;
            continue;
        }
        let Some(batch) = next_batch(&settings.edge_name) else {
            break;
        };
        let outcome = send(settings, batch.body, batch.count).await;
        if let Err(error) = &outcome {
            console_error!("usage report of {} events failed: {error}", batch.count);
        }
        settle(&outcome, batch.last_serial, now());
        if last_try {
            break;
        }
    }
}

/// Delay before retry number `failures` (1 s, 2 s, 4 s, … at most 30 s).
fn backoff_ms(failures: u32) -> f64 {
    (FIRST_BACKOFF_MS * 2f64.powi(failures.saturating_sub(1).min(16) as i32)).min(MAX_BACKOFF_MS)
}

/// Sends one batch of `count` events. Delivered means a 2xx whose receipt counts them all:
/// redirects are not followed (a redirected POST would arrive as a bodiless GET) and count as
/// failures, as does a control plane that has not answered within [`SEND_TIMEOUT_MS`].
async fn send(settings: &Settings, body: Vec<u8>, count: usize) -> Result<(), SendError> {
    let now_secs = crate::unix_secs();
    let signature = sync::sign_now(
        &settings.sync_secret,
        now_secs,
        &SignedRequest {
            method: "POST",
            path_and_query: USAGE_PATH,
            body: &body,
        },
    )
    .map_err(|error| SendError::Retry(format!("CSPRNG: {error}")))?;
    let headers = Headers::new();
    headers.set(sync::SIGNATURE_HEADER, &signature)?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(
            worker::js_sys::Uint8Array::from(body.as_slice()).into(),
        ));
    let url = format!("{}{USAGE_PATH}", settings.control_plane_url);
    let timeout = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(SEND_TIMEOUT_MS));
    let mut response = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send_with_signal(&timeout)
        .await?;
    match response.status_code() {
        200..=299 => {
            let receipt: UsageReceipt = response.json().await.map_err(|error| {
                SendError::Retry(format!("answered 2xx without a usage receipt: {error}"))
            })?;
            if receipt.received == count {
                Ok(())
            } else {
                Err(SendError::Retry(format!(
                    "acknowledged {} of {count} events",
                    receipt.received
                )))
            }
        }
        status @ (400 | 413) => Err(SendError::Refused(status)),
        status => Err(SendError::Retry(format!("answered {status}"))),
    }
}

#[cfg(test)]
mod tests;
