//! The isolate's in-memory copy of the key table: what the request path reads.
//!
//! Filled from the [`store`] Durable Object on an isolate's first request, and
//! kept no older than `REPLICA_FRESHNESS_MS` (default 100 ms) for every decision:
//!
//! - a copy's age is measured from when the read that brought it was *sent* to the store, so
//!   a revocation the store had by then is in the copy;
//! - a request that finds the copy older than the bound first reads what changed (one small
//!   `GET /table?after=N` to the store) and is decided after it ([`until_fresh`]). Each such
//!   request makes its own read: the runtime cancels a request that waits on work of another
//!   request's, so requests cannot share one read;
//! - a busy isolate rarely waits: from half the bound on, a request starts that read in the
//!   background (`waitUntil`) and is decided at once ([`claim_refresh`]);
//! - a push passing through this isolate refreshes it at once;
//! - a whole table (a snapshot answer) is built by one request at a time (`replica::one_build`): the
//!   others wait for that build rather than build their own beside it;
//! - a copy larger than `REPLICA_KEEP_WHILE_REBUILDING_MB` (default 32) is dropped before a whole
//!   table is built to replace it (a new generation, a copy too far behind), so an isolate never
//!   holds two large tables: requests wait for the build (some 150 ms at 1M keys) as a cold
//!   isolate's do. A smaller copy is kept beside the build: it decides while it is within the
//!   bound (later requests wait for the build too), and after a failed build.
//!
//! So a revocation the store holds is enforced by every isolate within the bound, busy or
//! idle. If the store cannot be read, the isolate decides on its copy, logs it, and tries
//! again after [`RETRY_AFTER_FAILURE_MS`] (the store is the edge's own state: when it is
//! unreachable, no push can land either). A refresh never moves the table backwards, unless
//! the store's generation changed (it reloaded a snapshot of another feed history): then the
//! copy is replaced whatever its sequence.

use std::cell::RefCell;

use keyplane_shared::table::codec::{CodecError, SnapshotDecoder, decode_changes};
use keyplane_shared::{KeyTable, RateLimiter, Timestamp};
use worker::{Env, Method, Request, RequestInit, Result, console_error, console_log};

use crate::claim::{Claim, ClaimSlot, HoldsClaim};
use crate::pieces::Pieces;
use crate::settings;
use crate::store::{self, BODY_KIND_HEADER, GENERATION_HEADER};

/// How long an isolate decides on its copy after a failed read of the store, in ms.
pub const RETRY_AFTER_FAILURE_MS: f64 = 1_000.0;

/// The isolate's copy of the table (reached through this module's functions).
#[derive(Default)]
pub struct Replica {
    table: KeyTable,
    loaded: bool,
    /// The store's generation the table comes from (random per snapshot load of the store).
    generation: u64,
    /// Moves whenever the copy is replaced by another generation's table (or first loaded):
    /// an answer to a read sent before that is stale and dropped.
    epoch: u64,
    /// The last read met a gap: the next one asks for a snapshot.
    needs_snapshot: bool,
    /// The last snapshot the store sent did not decode: the next read says so, and the store
    /// builds its own table from storage to find out why (`store::unloaded`).
    snapshot_failed: bool,
    /// When the store's round trip was last reported as longer than the bound.
    slow_reported_ms: f64,
    /// The feed history the store named (for the status endpoint).
    history: Option<String>,
    /// When the read that brought the current copy was sent (ms since the epoch).
    read_at_ms: f64,
    /// Until when a failed read lets decisions use the copy without waiting.
    failed_until_ms: f64,
    /// The running background refresh's claim.
    refresh: ClaimSlot,
    limiter: RateLimiter,
    reads: StoreReads,
}

/// Reads of the store this isolate made to keep its copy fresh, by who waited for them (for
/// the status endpoint: what the freshness bound costs under the isolate's traffic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreReads {
    /// Started ahead of the bound, in the background: no request waited.
    pub background: u64,
    /// Made by a request that found the copy past the bound (or none), decided after it.
    pub waiting: u64,
}

/// This isolate's reads of the store so far.
pub fn reads() -> StoreReads {
    REPLICA.with(|replica| replica.borrow().reads)
}

thread_local! {
    static REPLICA: RefCell<Replica> = RefCell::new(Replica::default());
}

/// Runs `f` on the isolate's copy of the table and its rate limiter (the decision's inputs).
pub fn with_table<R>(f: impl FnOnce(&KeyTable, &mut RateLimiter) -> R) -> R {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let Replica { table, limiter, .. } = &mut *replica;
        f(table, limiter)
    })
}

/// Forgets limiter state of keys that are fully refilled (keeps the map small).
pub fn prune_limiter(now: Timestamp) {
    REPLICA.with(|replica| replica.borrow_mut().limiter.prune(now));
}

/// How a request may use the isolate's copy at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Never loaded: the request waits for the first load.
    Unloaded,
    /// Older than the bound: the request waits for a refresh ([`until_fresh`]).
    Stale,
    /// Within the bound: decide now.
    Fresh,
}

/// Whether the copy may decide a request at `now_ms` under a bound of `freshness_ms`.
pub fn freshness(now_ms: f64, freshness_ms: f64) -> Freshness {
    REPLICA.with(|replica| {
        let replica = replica.borrow();
        if !replica.loaded {
            Freshness::Unloaded
        } else if now_ms - replica.read_at_ms < freshness_ms || now_ms < replica.failed_until_ms {
            Freshness::Fresh
        } else {
            Freshness::Stale
        }
    })
}

/// A refresh claimed longer ago than this was cancelled by the runtime without being dropped
/// (its future is never polled again): another may start.
const STALE_REFRESH_MS: f64 = 60_000.0;

impl HoldsClaim for Replica {
    fn slot(&mut self) -> &mut ClaimSlot {
        &mut self.refresh
    }
}

/// The right to run the background refresh, from [`claim_refresh`]; released when dropped
/// (also when the runtime drops the refresh half-way), unless a newer refresh took over.
pub type RefreshClaim = Claim<Replica>;

/// Claims a background refresh if one is due: the copy is at least `ahead_ms` old and no
/// refresh is running (or the running one's claim is stale).
pub fn claim_refresh(now_ms: f64, ahead_ms: f64) -> Option<RefreshClaim> {
    Claim::try_take(&REPLICA, now_ms, STALE_REFRESH_MS, |replica| {
        replica.loaded
            && now_ms - replica.read_at_ms >= ahead_ms
            && now_ms >= replica.failed_until_ms
    })
}

/// How often a request waiting for another request's snapshot build looks at the copy, in ms.
const BUILD_POLL_MS: u64 = 5;

/// Brings the copy within `freshness_ms` before a decision: reads what changed from the
/// store unless it already is (twice at most: an answer overtaken by another read's is
/// dropped), and waits while another request builds the table from a snapshot
/// (`replica::one_build`). A failed read is logged and the copy is used (see the module header).
pub async fn until_fresh(env: &Env, freshness_ms: f64) {
    let mut reads = 0;
    loop {
        let now_ms = worker::Date::now().as_millis() as f64;
        if freshness(now_ms, freshness_ms) == Freshness::Fresh {
            return;
        }
        if one_build::in_flight(now_ms) {
            worker::Delay::from(std::time::Duration::from_millis(BUILD_POLL_MS)).await;
            continue;
        }
        if reads == 2 {
            return;
        }
        reads += 1;
        REPLICA.with(|replica| replica.borrow_mut().reads.waiting += 1);
        match refresh(env).await {
            Ok(()) => report_slow_store(now_ms, freshness_ms),
            Err(error) => {
                console_error!("refreshing the key table before a decision failed: {error}");
                // An isolate with no copy (never loaded, or dropped for the build that failed)
                // tries once more: a snapshot being sent can be cut short by the store writing
                // a new one. One with a copy decides on it.
                if freshness(now_ms, freshness_ms) != Freshness::Unloaded || reads > 1 {
                    return;
                }
            }
        }
    }
}

/// Logs (at most once a minute) when the store's answer took longer than the bound itself:
/// every request then waits for a read, and the bound should be raised.
fn report_slow_store(sent_at: f64, freshness_ms: f64) {
    let now_ms = worker::Date::now().as_millis() as f64;
    let slow = REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let due = now_ms - sent_at > freshness_ms && now_ms - replica.slow_reported_ms > 60_000.0;
        if due {
            replica.slow_reported_ms = now_ms;
        }
        due
    });
    if slow {
        console_log!(
            "the key table store answered in {:.0} ms, more than REPLICA_FRESHNESS_MS ({freshness_ms:.0} ms): \
             every request waits for it; raise the bound",
            now_ms - sent_at
        );
    }
}

/// The applied sequence, key count, store generation and feed history, for the status
/// endpoint.
pub fn status() -> (u64, usize, u64, Option<String>) {
    REPLICA.with(|replica| {
        let replica = replica.borrow();
        (
            replica.table.applied_seq(),
            replica.table.len(),
            replica.generation,
            replica.history.clone(),
        )
    })
}

/// The background refresh, for the caller that won [`claim_refresh`]; releases the claim.
pub async fn refresh_claimed(claim: RefreshClaim, env: &Env) -> Result<()> {
    REPLICA.with(|replica| replica.borrow_mut().reads.background += 1);
    let outcome = refresh(env).await;
    drop(claim);
    outcome
}

/// Brings the isolate's table up to the store's. Concurrent refreshes are harmless: each
/// applies what follows the copy's sequence, and the copy never moves backwards.
pub async fn refresh(env: &Env) -> Result<()> {
    let sent_at = worker::Date::now().as_millis() as f64;
    let outcome = read_store(env, sent_at).await;
    if outcome.is_err() {
        REPLICA.with(|replica| {
            replica.borrow_mut().failed_until_ms = sent_at + RETRY_AFTER_FAILURE_MS;
        });
    }
    outcome
}

/// What a read of the store was sent against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// The copy's epoch when the read was sent.
    epoch: u64,
    /// The generation the copy's table comes from, when the read asked only for changes.
    generation: Option<u64>,
}

/// What the store answered.
enum StoreAnswer {
    /// Its whole table, of its current generation.
    Snapshot {
        generation: u64,
        table: Box<KeyTable>,
    },
    /// The changes after the copy's sequence, of the generation the read named.
    Changes {
        generation: u64,
        changes: Vec<keyplane_shared::Change>,
    },
}

impl Replica {
    /// What a read sent now is sent against; `after` and the generation go in its URL.
    fn send(&self) -> (Sent, u64) {
        let asks_changes = self.loaded && !self.needs_snapshot;
        let sent = Sent {
            epoch: self.epoch,
            generation: asks_changes.then_some(self.generation),
        };
        (
            sent,
            if asks_changes {
                self.table.applied_seq()
            } else {
                0
            },
        )
    }

    /// Whether the copy was replaced or dropped since a read was sent against `sent`: its
    /// answer is then dropped (not built, if it is a snapshot), since its table may be older
    /// than the copy's, or of a generation the store has left.
    fn overtaken(&self, sent: Sent) -> bool {
        sent.epoch != self.epoch
    }

    /// Before a whole table is built from a snapshot answer to a read sent against `sent`:
    /// drops a loaded copy whose table takes more than `keep_bytes`, so the isolate never
    /// holds it beside the new one (its requests wait for the build, `until_fresh`). Returns
    /// what the read now counts as sent against: an empty copy, whose freshness is the new
    /// table's own and to which no page of changes sent before applies.
    fn make_room(&mut self, sent: Sent, keep_bytes: usize) -> Sent {
        if !self.loaded || self.table.heap_bytes() <= keep_bytes {
            return sent;
        }
        self.table = KeyTable::default();
        self.loaded = false;
        self.epoch += 1;
        self.read_at_ms = 0.0;
        self.failed_until_ms = 0.0;
        Sent {
            epoch: self.epoch,
            generation: None,
        }
    }

    /// Takes an answer to a read sent at `sent_at` against `sent`; whether the copy is now as
    /// fresh as the store was then. An overtaken answer is dropped (even an empty page of
    /// changes must not make a dropped copy count as loaded), and a page of changes that does
    /// not follow the copy asks the next read for a snapshot.
    fn absorb(&mut self, sent: Sent, answer: StoreAnswer, sent_at: f64) -> bool {
        if self.overtaken(sent) {
            return false;
        }
        match answer {
            StoreAnswer::Snapshot { generation, table } => {
                let other_generation = !self.loaded || generation != self.generation;
                if other_generation {
                    self.epoch += 1;
                }
                // Within one generation the store never goes back: an older snapshot (a read
                // overtaken by another) leaves the newer copy.
                if other_generation || table.applied_seq() >= self.table.applied_seq() {
                    self.table = *table;
                    self.generation = generation;
                }
                self.needs_snapshot = false;
            }
            StoreAnswer::Changes {
                generation,
                changes,
            } => {
                if Some(generation) != sent.generation || generation != self.generation {
                    return false;
                }
                if self.table.apply_all(&changes).is_err() {
                    self.needs_snapshot = true;
                    return false;
                }
            }
        }
        self.loaded = true;
        self.read_at_ms = self.read_at_ms.max(sent_at);
        true
    }
}

async fn read_store(env: &Env, sent_at: f64) -> Result<()> {
    let (mut sent, after, failed) = REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        let (sent, after) = replica.send();
        (sent, after, std::mem::take(&mut replica.snapshot_failed))
    });
    let stub = env
        .durable_object(store::BINDING)?
        .get_by_name(store::STORE_NAME)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let mut url = match sent.generation {
        Some(generation) => format!("https://store/table?after={after}&generation={generation}"),
        None => "https://store/table?after=0".to_owned(),
    };
    if failed {
        url.push_str(&format!("&{}=1", store::FAILED_SNAPSHOT_PARAM));
    }
    let mut response = stub
        .fetch_with_request(Request::new_with_init(&url, &init)?)
        .await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "key table store answered {}",
            response.status_code()
        )));
    }
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let kind = header(BODY_KIND_HEADER).unwrap_or_default();
    let generation = header(GENERATION_HEADER)
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    let history = header(keyplane_shared::sync::HISTORY_HEADER);
    let corrupt = |error: CodecError| {
        worker::Error::RustError(format!(
            "key table store sent an undecodable {kind}: {error}"
        ))
    };
    // The build claim is held until the table is taken in: one build at a time in an isolate.
    let (answer, _build) = if kind == "snapshot" {
        let Some(build) = one_build::try_claim(worker::Date::now().as_millis() as f64) else {
            // Another request builds the table: this one drops its answer and waits for that
            // build (`until_fresh`).
            return Ok(());
        };
        if REPLICA.with(|replica| replica.borrow().overtaken(sent)) {
            // A read sent before the copy was replaced or dropped: building its older table
            // would drop the newer one.
            return Ok(());
        }
        let keep_bytes = settings::load(env)
            .map(|settings| settings.replica_keep_while_rebuilding_bytes)
            .unwrap_or(settings::DEFAULT_KEEP_WHILE_REBUILDING_BYTES);
        sent = REPLICA.with(|replica| replica.borrow_mut().make_room(sent, keep_bytes));
        let table = match receive_snapshot(&mut response, corrupt).await {
            Ok(table) => Box::new(table),
            Err(error) => {
                REPLICA.with(|replica| replica.borrow_mut().snapshot_failed = true);
                return Err(error);
            }
        };
        (StoreAnswer::Snapshot { generation, table }, Some(build))
    } else {
        let changes = decode_changes(&response.bytes().await?).map_err(corrupt)?;
        (
            StoreAnswer::Changes {
                generation,
                changes,
            },
            None,
        )
    };
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        if replica.absorb(sent, answer, sent_at) {
            replica.history = history;
        }
    });
    Ok(())
}

/// Builds the table from the store's snapshot answer as its pieces arrive (so the whole
/// encoding, 48 MB at 1M keys, is never held beside the table), then applies the change batch
/// that follows the snapshot (`corrupt` says what an undecodable piece is).
async fn receive_snapshot(
    response: &mut worker::Response,
    corrupt: impl Fn(CodecError) -> worker::Error + Copy,
) -> Result<KeyTable> {
    let mut decoder = SnapshotDecoder::new();
    let mut pieces = Pieces::of(response)?;
    while let Some(piece) = pieces.next().await? {
        decoder.push(piece).map_err(corrupt)?;
    }
    let (mut table, after) = decoder.finish().map_err(corrupt)?;
    let changes = decode_changes(&after).map_err(corrupt)?;
    table.apply_all(&changes).map_err(|gap| {
        worker::Error::RustError(format!(
            "key table store sent changes that do not follow its snapshot: {gap}"
        ))
    })?;
    Ok(table)
}

mod one_build;
#[cfg(test)]
mod tests;
