//! The edge's durable key table: one Durable Object (SQLite-backed) per deployment of the
//! worker, named [`STORE_NAME`].
//!
//! It is the edge's source of truth. Pushes from the control plane land here (after the
//! worker checked their signature), its alarm pulls the control plane's feed every
//! `PULL_INTERVAL_SECS` as a safety net, and isolates copy the table from it into memory for the
//! request path. Storage survives restarts: a snapshot in 1 MiB chunks plus the change batches
//! applied since; after [`COMPACT_AFTER_BATCHES`] batches they are folded into a new snapshot.
//!
//! Internal interface (reachable only through the binding, never from the internet):
//! - `GET /table?after=N`: the changes after `N` when it still holds them in memory, else a
//!   snapshot; header [`BODY_KIND_HEADER`] says which.
//! - `POST /sync` with a change batch and the push's nonce: refuses a nonce seen before
//!   (409 `replayed_request`), applies what is next in sequence, answers `{"applied_seq": N}`.
//!   A gap is answered with the sequence it has, so the pusher resends from there.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures_channel::oneshot;

use keyplane_shared::table::change::Applied;
use keyplane_shared::table::codec::{
    decode_changes, decode_snapshot, encode_changes, encode_snapshot,
};
use keyplane_shared::{Change, KeyTable};
use serde_json::json;
use worker::{
    DurableObject, Env, Method, Request, Response, Result, SqlStorage, SqlStorageValue, State,
    console_error, console_log, durable_object,
};

use crate::feed::{self, FeedReply};
use crate::settings;

/// The binding's name in `wrangler.toml`.
pub const BINDING: &str = "KEYPLANE_TABLE";
/// The one object's name.
pub const STORE_NAME: &str = "key-table";
/// Header telling whether `/table` sent `changes` or a `snapshot`.
pub const BODY_KIND_HEADER: &str = "x-keyplane-body";
/// Header carrying a push's nonce (hex) from the worker to the store.
pub const NONCE_HEADER: &str = "x-keyplane-nonce";
/// Header carrying when that nonce may be forgotten (ms since the epoch).
pub const NONCE_EXPIRES_HEADER: &str = "x-keyplane-nonce-expires";

/// Change batches kept before they are folded into a new snapshot.
pub const COMPACT_AFTER_BATCHES: i64 = 256;
/// Changes kept in memory to refresh isolates without a snapshot.
const RECENT_CHANGES: usize = 10_000;
const CHUNK_BYTES: usize = 1 << 20;

/// The Durable Object.
#[durable_object]
pub struct KeyTableStore {
    state: State,
    env: Env,
    table: RefCell<Option<KeyTable>>,
    recent: RefCell<VecDeque<Change>>,
    pulling: Cell<bool>,
    /// The pull after loading from storage is running; requests wait for it.
    catching_up: Cell<bool>,
    catch_up_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    alarm_armed: Cell<bool>,
}

/// Marks the start-up catch-up as running; when it ends (or its future is dropped), wakes
/// every request that waited for it.
struct CatchUp<'a>(&'a KeyTableStore);

impl<'a> CatchUp<'a> {
    fn start(store: &'a KeyTableStore) -> Self {
        store.catching_up.set(true);
        Self(store)
    }
}

impl Drop for CatchUp<'_> {
    fn drop(&mut self) {
        self.0.catching_up.set(false);
        for waiter in self.0.catch_up_waiters.take() {
            let _ = waiter.send(());
        }
    }
}

impl DurableObject for KeyTableStore {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in [
            "CREATE TABLE IF NOT EXISTS snapshot_chunks (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS change_batches (last_seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS push_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)",
        ] {
            if let Err(error) = sql.exec(statement, None) {
                console_error!("key table store: creating its tables failed: {error}");
            }
        }
        Self {
            state,
            env,
            table: RefCell::new(None),
            recent: RefCell::new(VecDeque::new()),
            pulling: Cell::new(false),
            catching_up: Cell::new(false),
            catch_up_waiters: RefCell::new(Vec::new()),
            alarm_armed: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_loaded().await?;
        self.arm_alarm().await;
        let url = req.url()?;
        match (req.method(), url.path()) {
            (Method::Get, "/table") => {
                let after = url
                    .query_pairs()
                    .find(|(name, _)| name == "after")
                    .and_then(|(_, value)| value.parse::<u64>().ok())
                    .unwrap_or(0);
                self.table_after(after)
            }
            (Method::Post, "/sync") => {
                let nonce = req.headers().get(NONCE_HEADER)?.unwrap_or_default();
                let expires = req
                    .headers()
                    .get(NONCE_EXPIRES_HEADER)?
                    .and_then(|value| value.parse::<i64>().ok())
                    .unwrap_or(0);
                let body = req.bytes().await?;
                self.sync(&nonce, expires, &body)
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.ensure_loaded().await?;
        if let Err(error) = self.pull().await {
            console_error!("key table store: pulling the control plane's feed failed: {error}");
        }
        self.alarm_armed.set(false);
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
    async fn ensure_loaded(&self) -> Result<()> {
        if self.table.borrow().is_some() {
            if self.catching_up.get() {
                let (done, wait) = oneshot::channel::<()>();
                self.catch_up_waiters.borrow_mut().push(done);
                // Cancelled (the catch-up's future was dropped) counts as finished too.
                let _ = wait.await;
            }
            return Ok(());
        }
        let table = read_storage(&self.sql())?;
        *self.table.borrow_mut() = Some(table);
        // Catch up on start: an edge that was down during a revocation must not serve its
        // stored table a moment longer than needed. With the control plane down, the stored
        // table is served as it is.
        let _catching_up = CatchUp::start(self);
        if let Err(error) = self.pull().await {
            console_error!(
                "key table store: catching up on start failed, serving the stored table: {error}"
            );
        }
        Ok(())
    }

    /// Schedules the safety-net pull if this instance has not yet.
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
        let at = worker::Date::now().as_millis() as i64 + interval;
        match self.state.storage().set_alarm(at).await {
            Ok(()) => self.alarm_armed.set(true),
            Err(error) => console_error!("key table store: setting the alarm failed: {error}"),
        }
    }

    fn applied_seq(&self) -> u64 {
        self.table
            .borrow()
            .as_ref()
            .map_or(0, KeyTable::applied_seq)
    }

    fn table_after(&self, after: u64) -> Result<Response> {
        let seq = self.applied_seq();
        let recent = self.recent.borrow();
        let covered = after == seq
            || (after < seq && recent.front().is_some_and(|first| first.seq <= after + 1));
        let (kind, body) = if covered {
            let changes: Vec<Change> = recent.iter().filter(|c| c.seq > after).cloned().collect();
            ("changes", encode_changes(&changes))
        } else {
            let table = self.table.borrow();
            let bytes = table.as_ref().map(encode_snapshot).unwrap_or_default();
            ("snapshot", bytes)
        };
        let mut response = Response::from_bytes(body)?;
        response.headers_mut().set(BODY_KIND_HEADER, kind)?;
        Ok(response)
    }

    fn sync(&self, nonce: &str, expires_at: i64, body: &[u8]) -> Result<Response> {
        let sql = self.sql();
        let now = worker::Date::now().as_millis() as i64;
        sql.exec(
            "DELETE FROM push_nonces WHERE expires_at < ?",
            vec![now.into()],
        )?;
        if nonce.is_empty() {
            return error_response(400, "missing_nonce");
        }
        let seen = sql
            .exec(
                "SELECT 1 FROM push_nonces WHERE nonce = ?",
                vec![nonce.into()],
            )?
            .raw()
            .next()
            .is_some();
        if seen {
            return error_response(409, "replayed_request");
        }
        let changes = match decode_changes(body) {
            Ok(changes) => changes,
            Err(_) => return error_response(400, "malformed_changes"),
        };
        sql.exec(
            "INSERT INTO push_nonces (nonce, expires_at) VALUES (?, ?)",
            vec![nonce.into(), expires_at.into()],
        )?;
        self.apply(changes)?;
        Response::from_json(&json!({ "applied_seq": self.applied_seq() }))
    }

    /// Applies what is next in sequence, persists it and keeps it for isolate refreshes.
    /// Returns whether a gap stopped it.
    fn apply(&self, changes: Vec<Change>) -> Result<bool> {
        let mut fresh = Vec::new();
        let mut gap = false;
        {
            let mut table = self.table.borrow_mut();
            let table = table.get_or_insert_with(KeyTable::new);
            for change in changes {
                match table.apply(&change) {
                    Ok(Applied::Applied) => fresh.push(change),
                    Ok(Applied::AlreadyApplied) => {}
                    Err(_) => {
                        gap = true;
                        break;
                    }
                }
            }
        }
        if let Some(last) = fresh.last() {
            let sql = self.sql();
            sql.exec(
                "INSERT OR REPLACE INTO change_batches (last_seq, body) VALUES (?, ?)",
                vec![seq_value(last.seq), encode_changes(&fresh).into()],
            )?;
            let mut recent = self.recent.borrow_mut();
            recent.extend(fresh);
            while recent.len() > RECENT_CHANGES {
                recent.pop_front();
            }
            drop(recent);
            let batches = sql
                .exec("SELECT COUNT(*) FROM change_batches", None)?
                .raw()
                .next()
                .and_then(|row| row.ok())
                .and_then(|row| match row.first() {
                    Some(SqlStorageValue::Integer(count)) => Some(*count),
                    _ => None,
                })
                .unwrap_or(0);
            if batches > COMPACT_AFTER_BATCHES {
                self.write_snapshot()?;
            }
        }
        Ok(gap)
    }

    /// Replaces the table with `snapshot` (never moving backwards) and persists it.
    fn replace(&self, snapshot: KeyTable) -> Result<()> {
        if snapshot.applied_seq() < self.applied_seq() {
            return Ok(());
        }
        *self.table.borrow_mut() = Some(snapshot);
        self.recent.borrow_mut().clear();
        self.write_snapshot()
    }

    /// Writes the current table as the stored snapshot and drops the stored batches; all in
    /// one synchronous run, which the runtime commits atomically.
    fn write_snapshot(&self) -> Result<()> {
        let bytes = self
            .table
            .borrow()
            .as_ref()
            .map(encode_snapshot)
            .unwrap_or_default();
        let sql = self.sql();
        sql.exec("DELETE FROM snapshot_chunks", None)?;
        sql.exec("DELETE FROM change_batches", None)?;
        for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            sql.exec(
                "INSERT INTO snapshot_chunks (idx, bytes) VALUES (?, ?)",
                vec![(index as i64).into(), chunk.to_vec().into()],
            )?;
        }
        Ok(())
    }

    /// Pulls the control plane's feed until it has nothing newer (a snapshot first when empty).
    async fn pull(&self) -> Result<()> {
        if self.pulling.replace(true) {
            return Ok(());
        }
        let outcome = self.pull_inner().await;
        self.pulling.set(false);
        outcome
    }

    async fn pull_inner(&self) -> Result<()> {
        let settings = settings::load(&self.env)
            .map_err(|error| worker::Error::RustError(error.to_string()))?;
        let unavailable = |error: feed::FeedError| worker::Error::RustError(error.to_string());
        if self.applied_seq() == 0 {
            let snapshot = feed::snapshot(&settings).await.map_err(unavailable)?;
            self.replace(snapshot)?;
        }
        loop {
            match feed::changes_after(&settings, self.applied_seq())
                .await
                .map_err(unavailable)?
            {
                FeedReply::Changes(changes) => {
                    let full_page = changes.len() as u64 >= feed::PAGE;
                    let gap = self.apply(changes)?;
                    if !full_page || gap {
                        return Ok(());
                    }
                }
                FeedReply::Ahead => {
                    console_log!(
                        "key table store: the control plane is behind this edge; reloading its snapshot"
                    );
                    let snapshot = feed::snapshot(&settings).await.map_err(unavailable)?;
                    *self.table.borrow_mut() = None;
                    self.replace(snapshot)?;
                    return Ok(());
                }
            }
        }
    }
}

fn seq_value(seq: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(seq).unwrap_or(i64::MAX))
}

fn error_response(status: u16, code: &str) -> Result<Response> {
    Ok(Response::from_json(&json!({ "error": { "code": code } }))?.with_status(status))
}

/// The stored snapshot plus the stored batches after it.
fn read_storage(sql: &SqlStorage) -> Result<KeyTable> {
    let mut bytes = Vec::new();
    for row in sql
        .exec("SELECT bytes FROM snapshot_chunks ORDER BY idx", None)?
        .raw()
    {
        if let Some(SqlStorageValue::Blob(chunk)) = row?.into_iter().next() {
            bytes.extend_from_slice(&chunk);
        }
    }
    let mut table = if bytes.is_empty() {
        KeyTable::new()
    } else {
        decode_snapshot(&bytes)
            .map_err(|error| worker::Error::RustError(format!("stored snapshot: {error}")))?
    };
    for row in sql
        .exec("SELECT body FROM change_batches ORDER BY last_seq", None)?
        .raw()
    {
        if let Some(SqlStorageValue::Blob(body)) = row?.into_iter().next() {
            let changes = decode_changes(&body)
                .map_err(|error| worker::Error::RustError(format!("stored changes: {error}")))?;
            if table.apply_all(&changes).is_err() {
                console_error!(
                    "key table store: stored batches have a gap; the next pull fills it"
                );
                break;
            }
        }
    }
    Ok(table)
}
