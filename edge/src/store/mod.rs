//! The edge's durable key table: one Durable Object (SQLite-backed) per deployment of the
//! worker, named [`STORE_NAME`].
//!
//! It is the edge's source of truth. Pushes from the control plane land here (after the
//! worker checked their signature and that they are meant for this edge), its alarm pulls
//! the control plane's feed every `PULL_INTERVAL_SECS` as a safety net, and isolates copy the
//! table from it into memory for the request path. Storage survives restarts (`storage`);
//! after [`COMPACT_AFTER_BATCHES`] batches, or [`COMPACT_AFTER_BYTES`] of them, they are
//! folded into a new snapshot.
//!
//! The table has a lineage (`keyplane_shared::table::lineage`): the feed history it comes
//! from and the feed chain at its sequence. Changes are taken only from a feed answer or a
//! push whose chain at this store's sequence is the store's own; a store that meets another
//! history (a re-created or restored control-plane database) drops its table and loads a
//! snapshot, and takes a new generation, so every isolate drops its copy too. While such a
//! snapshot's body is decoded the old table is set aside when storage holds it exactly
//! (`replacement`), so the store does not hold two tables at once (an isolate has 128 MB, and
//! a table of 1.5M keys takes some 90 MB): isolates are sent storage's copy meanwhile, pushes
//! are answered 503 `table_reloading`, and a body refused half-way makes it read the table
//! back from storage. After a failed storage write (storage behind the table) the old table
//! is kept instead.
//!
//! A change whose write fails is still applied and sent to isolates (it is enforced); storage
//! then catches up with the whole table before anything is acknowledged again (`repair`).
//!
//! On start the table is left in storage when storage checks (`unloaded`): isolates are sent
//! storage's copy, and the store builds its own only when it must change or write it, so a
//! restarted edge's first request waits for one table build, not two.
//!
//! Internal interface (reachable only through the binding, never from the internet):
//! - `GET /table?after=N&generation=G[&failed=1]`: the changes after `N` when it still holds them in
//!   memory and `G` is its generation, else a snapshot followed by one change batch (storage's
//!   own copy, streamed a 1 MiB chunk at a time as it is read, then the changes stored after
//!   it; the table encoded afresh only while storage is behind it); header
//!   [`BODY_KIND_HEADER`] says which, [`GENERATION_HEADER`] and `x-keyplane-history` say what
//!   it holds.
//! - `POST /sync` with a change batch, the push's nonce and its lineage ([`PUSH_HISTORY_HEADER`],
//!   [`PUSH_AFTER_HEADER`], [`PUSH_CHAIN_HEADER`]): refuses a nonce seen before (409
//!   `replayed_request`), a push of another history (409 `history_diverged`, and pulls at
//!   once) and any push while the table is set aside (503 `table_reloading`), applies what is
//!   next in sequence, answers `{"applied_seq": N}`. A push that does
//!   not reach this store's sequence (a gap) is answered with the sequence it has, so the
//!   pusher resends from there.
//! - `GET /stored`: what storage holds, `{"snapshot_chunks": N, "after_snapshot": {"batches":
//!   N, "bytes": N}}`, where the table is (`"table"`: `memory`, `storage` or `set aside`), and
//!   `isolate_memory_bytes` (shown in the edge's signed status).

mod guards;
mod push;
mod repair;
mod replacement;
mod storage;
mod stored;
mod unloaded;

use guards::{CatchUp, ClearOnDrop};
pub use push::PushOrigin;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;

use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::change::Applied;
use keyplane_shared::table::codec::{encode_changes, encode_snapshot};
use keyplane_shared::table::lineage::apply_following;
use keyplane_shared::{Change, FeedChain, KeyTable, Lineage};
use serde_json::json;
use worker::{
    DurableObject, Env, Method, Request, Response, Result, SqlStorage, State, console_error,
    console_log, durable_object,
};

use crate::feed::{self, FeedReply};
use crate::settings;

/// The binding's name in `wrangler.toml`.
pub const BINDING: &str = "KEYPLANE_TABLE";
/// The one object's name.
pub const STORE_NAME: &str = "key-table";
/// Header telling whether `/table` sent `changes` or a `snapshot`.
pub const BODY_KIND_HEADER: &str = "x-keyplane-body";
/// Query parameter of `/table`: the isolate could not decode the last snapshot it was sent.
pub const FAILED_SNAPSHOT_PARAM: &str = "failed";
/// Header of `/table`: the store's generation (it moves on every snapshot load).
pub const GENERATION_HEADER: &str = "x-keyplane-generation";
/// Header carrying a push's nonce (hex) from the worker to the store.
pub const NONCE_HEADER: &str = "x-keyplane-nonce";
/// Header carrying when that nonce may be forgotten (ms since the epoch).
pub const NONCE_EXPIRES_HEADER: &str = "x-keyplane-nonce-expires";
/// Header carrying a push's feed history (`hst_…`).
pub const PUSH_HISTORY_HEADER: &str = "x-keyplane-push-history";
/// Header carrying the sequence a push sends from.
pub const PUSH_AFTER_HEADER: &str = "x-keyplane-push-after";
/// Header carrying the feed chain (hex) at that sequence.
pub const PUSH_CHAIN_HEADER: &str = "x-keyplane-push-chain";

/// Change batches kept before they are folded into a new snapshot.
pub const COMPACT_AFTER_BATCHES: i64 = 256;
/// Encoded bytes of stored change batches kept before they are folded into a new snapshot:
/// the stored changes reach an isolate that loads the whole table as one batch, decoded whole
/// beside the table, so they are bounded by size as well as by count (a pull after a bulk
/// import, say, stores pages of 10,000 changes, some 600 KB each: 256 of them would be some
/// 150 MB).
pub const COMPACT_AFTER_BYTES: i64 = 4 << 20;
/// Changes kept in memory to refresh isolates without a snapshot.
const RECENT_CHANGES: usize = 10_000;
/// Pull rounds in one pull: enough for a million changes, and a bound if pushes keep moving
/// the sequence under a page in flight.
const MAX_PULL_ROUNDS: usize = 200;

/// The Durable Object.
#[durable_object]
pub struct KeyTableStore {
    state: State,
    env: Env,
    table: RefCell<Option<KeyTable>>,
    /// The table's lineage at its sequence; `None` when unknown (never loaded, or storage
    /// from before lineages): the next pull loads a snapshot.
    lineage: Cell<Option<Lineage>>,
    /// Random, new on every snapshot load; isolates holding another drop their copy.
    generation: Cell<u64>,
    recent: RefCell<VecDeque<Change>>,
    pulling: Cell<bool>,
    /// A pull was asked for while one was running: the running one goes round once more.
    pull_again: Cell<bool>,
    /// The pull after loading from storage is running; requests wait for it.
    catching_up: Cell<bool>,
    catch_up_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// An alarm is scheduled (set by this instance, not yet fired).
    alarm_armed: Cell<bool>,
    /// Whether storage holds exactly the table (false after a failed write, until a snapshot
    /// is written): only then are isolates sent storage's copy.
    matches_storage: Cell<bool>,
    /// Moves on every snapshot write: a copy of storage being sent stops if it moves.
    stored_epoch: Rc<Cell<u64>>,
    /// The table's sequence while it is set aside for a replacement (`replacement::SetAside`);
    /// `table` is `None` then, and storage holds it.
    set_aside: Cell<Option<u64>>,
    /// The table's sequence while it is left in storage, not yet built (`unloaded`); `table`
    /// is `None` then, and storage holds it.
    unloaded: Cell<Option<u64>>,
}

impl DurableObject for KeyTableStore {
    fn new(state: State, env: Env) -> Self {
        storage::create_tables(&state.storage().sql());
        Self {
            state,
            env,
            table: RefCell::new(None),
            lineage: Cell::new(None),
            generation: Cell::new(0),
            recent: RefCell::new(VecDeque::new()),
            pulling: Cell::new(false),
            pull_again: Cell::new(false),
            catching_up: Cell::new(false),
            catch_up_waiters: RefCell::new(Vec::new()),
            alarm_armed: Cell::new(false),
            matches_storage: Cell::new(false),
            stored_epoch: Rc::new(Cell::new(0)),
            set_aside: Cell::new(None),
            unloaded: Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_loaded().await;
        self.arm_alarm().await;
        let url = req.url()?;
        let query = |name: &str| crate::query_param(&url, name);
        match (req.method(), url.path()) {
            (Method::Get, "/table") => {
                let after = query("after").and_then(|value| value.parse::<u64>().ok());
                let generation = query("generation").and_then(|value| value.parse::<u64>().ok());
                if query(FAILED_SNAPSHOT_PARAM).is_some() {
                    // An isolate could not decode the snapshot it was sent (`unloaded`).
                    self.build_unloaded();
                }
                self.table_after(after.unwrap_or(0), generation)
            }
            (Method::Post, "/sync") => {
                let header = |name: &str| req.headers().get(name).ok().flatten();
                let nonce = header(NONCE_HEADER).unwrap_or_default();
                let expires = header(NONCE_EXPIRES_HEADER)
                    .and_then(|value| value.parse::<i64>().ok())
                    .unwrap_or(0);
                let origin = header(PUSH_HISTORY_HEADER)
                    .and_then(|value| HistoryId::parse(&value).ok())
                    .zip(header(PUSH_AFTER_HEADER).and_then(|value| value.parse::<u64>().ok()))
                    .zip(header(PUSH_CHAIN_HEADER).and_then(|value| FeedChain::parse_hex(&value)))
                    .map(|((history, after), chain)| PushOrigin {
                        history,
                        after,
                        chain,
                    });
                let body = req.bytes().await?;
                match origin {
                    Some(origin) => self.sync(&nonce, expires, &origin, &body).await,
                    None => error_response(400, "malformed_push"),
                }
            }
            (Method::Get, "/stored") => Response::from_json(&json!({
                "snapshot_chunks": storage::snapshot_chunk_count(&self.sql())?,
                "after_snapshot": storage::stored_batches(&self.sql())?,
                "table": self.table_place(),
                // The WebAssembly memory of the isolate the store runs in: the most it ever
                // held at once, the store's table and that isolate's own copy (when it serves
                // requests) included.
                "isolate_memory_bytes": crate::internal::wasm_memory_bytes(),
            })),
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        // This alarm has fired: none is scheduled until it is armed again below, whatever
        // happens in between.
        self.alarm_armed.set(false);
        self.ensure_loaded().await;
        if let Err(error) = self.pull().await {
            console_error!("key table store: pulling the control plane's feed failed: {error}");
        }
        self.repair_storage();
        self.arm_alarm().await;
        Response::ok("pulled")
    }
}

impl KeyTableStore {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Loads the table from storage on first use, then pulls what it missed. Requests that
    /// arrive during that catch-up wait for it: an isolate must not copy the stored table
    /// while the pull that may revoke keys in it is under way.
    async fn ensure_loaded(&self) {
        if self.table.borrow().is_some()
            || self.set_aside.get().is_some()
            || self.unloaded.get().is_some()
        {
            if self.catching_up.get() {
                let (done, wait) = oneshot::channel::<()>();
                self.catch_up_waiters.borrow_mut().push(done);
                // Cancelled (the catch-up's future was dropped) counts as finished too.
                let _ = wait.await;
            }
            return;
        }
        self.open_stored();
        // Catch up on start: an edge that was down during a revocation must not serve its
        // stored table a moment longer than needed. With the control plane down, the stored
        // table is served as it is.
        let _catching_up = CatchUp::start(self);
        if let Err(error) = self.pull().await {
            console_error!(
                "key table store: catching up on start failed, serving the stored table: {error}"
            );
        }
    }

    /// Reads the table (its lineage and generation) from storage.
    fn load_stored(&self) {
        self.install(storage::read(&self.sql()));
    }

    /// Takes `stored` as the table, with its lineage and generation.
    fn install(&self, stored: storage::Stored) {
        *self.table.borrow_mut() = Some(stored.table);
        self.unloaded.set(None);
        self.matches_storage.set(stored.matches_storage);
        self.lineage.set(stored.lineage);
        self.generation.set(stored.generation);
    }

    /// Schedules the safety-net pull `PULL_INTERVAL_SECS` from now, unless one is scheduled.
    async fn arm_alarm(&self) {
        if self.alarm_armed.get() {
            return;
        }
        let interval = match settings::load(&self.env) {
            Ok(settings) => settings.pull_interval_ms,
            Err(error) => {
                console_error!("{error}");
                return;
            }
        };
        self.schedule_pull(Duration::from_millis(interval.unsigned_abs()))
            .await;
    }

    /// Schedules a pull `after` from now (an offset: the runtime's alarm takes an offset or a
    /// date, and a timestamp passed as an offset would land decades away).
    async fn schedule_pull(&self, after: Duration) {
        match self.state.storage().set_alarm(after).await {
            Ok(()) => self.alarm_armed.set(true),
            Err(error) => console_error!("key table store: setting the alarm failed: {error}"),
        }
    }

    fn applied_seq(&self) -> u64 {
        self.table.borrow().as_ref().map_or_else(
            || self.set_aside.get().or(self.unloaded.get()).unwrap_or(0),
            KeyTable::applied_seq,
        )
    }

    fn table_after(&self, after: u64, generation: Option<u64>) -> Result<Response> {
        let seq = self.applied_seq();
        let recent = self.recent.borrow();
        let same_generation = generation == Some(self.generation.get());
        // The recent changes cover `after` only if they run from it to the table's sequence.
        let covered = same_generation
            && (after == seq
                || (after < seq
                    && recent.front().is_some_and(|first| first.seq <= after + 1)
                    && recent.back().is_some_and(|last| last.seq == seq)));
        let (kind, mut response) = if covered {
            let changes: Vec<Change> = recent.iter().filter(|c| c.seq > after).cloned().collect();
            ("changes", Response::from_bytes(encode_changes(&changes))?)
        } else if self.matches_storage.get() {
            ("snapshot", stored::send(self.sql(), &self.stored_epoch)?)
        } else {
            // Storage is behind (a write failed): the table itself, encoded here.
            self.build_unloaded();
            let table = self.table.borrow();
            let mut body = table.as_ref().map(encode_snapshot).unwrap_or_default();
            body.extend_from_slice(&encode_changes(&[]));
            ("snapshot", Response::from_bytes(body)?)
        };
        let headers = response.headers_mut();
        headers.set(BODY_KIND_HEADER, kind)?;
        headers.set(GENERATION_HEADER, &self.generation.get().to_string())?;
        if let Some(lineage) = self.lineage.get() {
            headers.set(
                keyplane_shared::sync::HISTORY_HEADER,
                &lineage.history.to_string(),
            )?;
        }
        Ok(response)
    }

    /// Applies what is next in sequence (advancing the lineage's chain), keeps it for isolate
    /// refreshes and persists it. Returns whether a gap stopped it.
    fn apply(&self, changes: Vec<Change>) -> Result<bool> {
        if self.set_aside.get().is_some() {
            // Never reached (pushes wait and pulls reload meanwhile): changes are not applied
            // to a table that is not here.
            return Err(worker::Error::RustError(
                "the key table is set aside for a replacement".into(),
            ));
        }
        if changes.is_empty() && self.matches_storage.get() {
            // Nothing to apply or to catch up: a table left in storage stays there.
            return Ok(false);
        }
        self.build_unloaded();
        let mut fresh = Vec::new();
        let mut gap = false;
        let mut lineage = self.lineage.get();
        {
            let mut table = self.table.borrow_mut();
            let table = table.get_or_insert_with(KeyTable::new);
            for change in changes {
                match apply_following(table, lineage.as_mut(), &change) {
                    Ok(Applied::Applied) => fresh.push(change),
                    Ok(Applied::AlreadyApplied) => {}
                    Err(_) => {
                        gap = true;
                        break;
                    }
                }
            }
        }
        self.lineage.set(lineage);
        // Kept for isolates before the write: if the write fails, what isolates are sent still
        // matches the table they are told about, and the change is enforced.
        {
            let mut recent = self.recent.borrow_mut();
            recent.extend(fresh.iter().cloned());
            while recent.len() > RECENT_CHANGES {
                recent.pop_front();
            }
        }
        if !self.matches_storage.get() {
            // Storage is behind the table: it catches up, even with nothing new, before the
            // push or page is acknowledged (`repair`).
            return self.catch_up_storage().map(|()| gap);
        }
        if fresh.is_empty() {
            return Ok(gap);
        }
        let chain_after = self.lineage.get().map(|lineage| lineage.chain);
        let stored = storage::append_batch(&self.sql(), &fresh, chain_after)
            .inspect_err(|_| self.matches_storage.set(false))?;
        if stored.batches > COMPACT_AFTER_BATCHES || stored.bytes > COMPACT_AFTER_BYTES {
            self.write_snapshot()?;
        }
        Ok(gap)
    }

    /// Writes the current table as the stored snapshot (with its lineage and generation).
    fn write_snapshot(&self) -> Result<()> {
        self.build_unloaded();
        let table = self.table.borrow();
        let empty = KeyTable::new();
        self.stored_epoch.set(self.stored_epoch.get() + 1);
        let written = storage::write_snapshot(
            &self.sql(),
            table.as_ref().unwrap_or(&empty),
            self.lineage.get(),
            self.generation.get(),
        );
        self.matches_storage.set(written.is_ok());
        written
    }

    /// Pulls the control plane's feed until it has nothing newer (a snapshot first when the
    /// lineage is unknown or another history's). One at a time; a second call returns at once.
    async fn pull(&self) -> Result<()> {
        if self.pulling.replace(true) {
            self.pull_again.set(true);
            return Ok(());
        }
        let _running = ClearOnDrop(&self.pulling);
        // Asked again while running (a push of another history, a second alarm): once more,
        // and at most twice more, so a reason to pull that came mid-pull is not lost.
        for _ in 0..3 {
            self.pull_again.set(false);
            self.pull_inner().await?;
            if !self.pull_again.get() {
                break;
            }
        }
        Ok(())
    }

    async fn pull_inner(&self) -> Result<()> {
        let settings = settings::load(&self.env)
            .map_err(|error| worker::Error::RustError(error.to_string()))?;
        let unavailable = |error: feed::FeedError| worker::Error::RustError(error.to_string());
        // No lineage, or a table still set aside (reading it back failed): only a snapshot
        // gives the store a table to follow the feed from.
        if self.lineage.get().is_none() || self.set_aside.get().is_some() {
            self.reload(&settings).await?;
        }
        for _ in 0..MAX_PULL_ROUNDS {
            let after = self.applied_seq();
            let reply = feed::changes_after(&settings, after)
                .await
                .map_err(unavailable)?;
            if self.applied_seq() != after {
                // A push moved the table while the page was on its way: ask again from there.
                continue;
            }
            match reply {
                FeedReply::Changes(page) => {
                    let continues = self
                        .lineage
                        .get()
                        .is_some_and(|lineage| lineage.continues(page.history, page.chain_after));
                    if !continues {
                        console_log!(
                            "key table store: the control plane's feed is another history \
                             ({}) than this table's; reloading its snapshot",
                            page.history
                        );
                        self.reload(&settings).await?;
                        continue;
                    }
                    let more = page.more_follow();
                    let gap = self.apply(page.changes)?;
                    if !more || gap {
                        return Ok(());
                    }
                }
                FeedReply::Ahead => {
                    console_log!(
                        "key table store: the control plane is behind this edge; reloading its snapshot"
                    );
                    self.reload(&settings).await?;
                }
            }
        }
        Ok(())
    }
}

/// A generation for a new snapshot load: random (so one reused after lost storage cannot
/// match an isolate's), and never the current one. 53 bits: it is stored through the
/// runtime's SQL API as a JS number, exact only up to 2^53.
fn new_generation(current: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let drawn = getrandom::fill(&mut bytes).map(|()| u64::from_le_bytes(bytes) >> 11);
    match drawn {
        Ok(generation) if generation != current => generation,
        // No randomness (or the one value in 2^64): still another generation.
        _ => current.wrapping_add(1),
    }
}

fn ack(applied_seq: u64) -> Result<Response> {
    Response::from_json(&json!({ "applied_seq": applied_seq }))
}

fn error_response(status: u16, code: &str) -> Result<Response> {
    Ok(Response::from_json(&json!({ "error": { "code": code } }))?.with_status(status))
}
