//! Usage events in SQL: batched, idempotent ingestion that also keeps each key's last use
//! current; a key's events newest first; per-day counts; deletion past the retention period.
//!
//! Locking: a batch's inserts run in ascending request-id order and its key updates in
//! ascending key-id order (on PostgreSQL the key rows are locked in that order before the one
//! `UPDATE … FROM (VALUES …)` per chunk, which visits rows in whatever order its join does), so
//! two batches ingested at once (a retry racing the original, two edges reporting the same
//! keys) wait on each other's rows in one order and cannot deadlock. SQLite holds the
//! database's write lock for the whole transaction.
//! Ingestion takes no organization lock, so it never waits on key management either (which
//! locks the organization, then the key; ingestion only ever holds key rows).

use std::collections::{BTreeMap, HashMap, HashSet};

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId, RequestId};
use keyplane_shared::usage::{UsageBatch, UsageEvent};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};

use super::Backend;
use super::filtered::{Filtered, Param};
use super::markers::{Markers, cached};
use super::outbox;
use super::rows::{bytes16, corrupt, u64_of};
use super::sweep::{self, Expiring};
use crate::store::outbox::{EventType, NewEvent};
use crate::store::webhooks::RATE_LIMITED_NOTICE_PREFIX;
use crate::store::{
    DailyStatusCount, IngestReport, Page, StatusFilter, StoreError, UsageFilter, UsageRecord,
};
use crate::timestamps::rfc3339;

/// Events per INSERT statement (9 parameters each: 4,500, far below either database's limit of
/// 32,766 and 65,535). Measured with `usage_ingest` (SQLite, batches of 1,000 time-ordered
/// events, 2026-12-06): with `$n` markers, whose binding costs grow with the square of the
/// statement's parameters (`markers`), 50 rows a statement was fastest (51,000 events/s on that
/// host); with `?` markers, 50 rows gave 66,000–73,000, 200 rows 78,000–79,000, 500 rows
/// 98,000–114,000 and 1,000 rows 103,000–124,000 (each statement the cache keeps is larger, so
/// 500). PostgreSQL keeps 200, which saves it round trips.
fn insert_chunk(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 500,
        Backend::Postgres => 200,
    }
}
/// Key ids per lookup statement.
const LOOKUP_CHUNK: usize = 500;
/// Keys per last-use UPDATE (3 parameters each).
const TOUCH_CHUNK: usize = 300;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The columns [`usage_from_row`] reads.
const USAGE_COLUMNS: &str = "request_id, key_id, org_id, at, method, path, status, ip, edge";

/// An event that passed attribution: its key exists and belongs to its organization.
#[derive(Clone, Copy)]
struct Attributed<'a> {
    key: KeyId,
    org: OrgId,
    event: &'a UsageEvent,
}

/// See [`crate::store::Store::ingest_usage`].
pub(super) async fn ingest(
    pool: &AnyPool,
    backend: Backend,
    batch: &UsageBatch,
    now: Timestamp,
) -> Result<IngestReport, StoreError> {
    let mut report = IngestReport {
        received: batch.events.len(),
        ..IngestReport::default()
    };
    // Read outside the transaction: a key row is never removed and never changes organization,
    // so what this finds still holds at commit. (In SQLite this also lets the transaction
    // begin with a write, which takes the write lock at once instead of failing to upgrade.)
    let owners = key_owners(pool, backend, &batch.events).await?;
    let mut attributed = Vec::with_capacity(batch.events.len());
    for event in &batch.events {
        let Some(key) = event.key_id else {
            report.unattributed += 1;
            continue;
        };
        match owners.get(&key) {
            None => report.unknown_key += 1,
            Some(&org) if event.org_id == Some(org) => {
                attributed.push(Attributed { key, org, event })
            }
            Some(_) => report.org_mismatch += 1,
        }
    }
    if attributed.is_empty() {
        return Ok(report);
    }
    let attributed_count = attributed.len();
    // Of events sharing a request id, the batch's first is the one stored.
    let mut seen = HashSet::with_capacity(attributed.len());
    attributed.retain(|entry| seen.insert(entry.event.request_id));
    // Every kept event is a use of its key, one already stored too (re-applying it is a
    // no-op); a copy dropped just above is not, so its time and address cannot win.
    let mut newest: BTreeMap<KeyId, &UsageEvent> = BTreeMap::new();
    for Attributed { key, event, .. } in &attributed {
        let slot = newest.entry(*key).or_insert(event);
        // A later event of the batch wins a tie: the batch is oldest first.
        if event.at >= slot.at {
            *slot = event;
        }
    }
    // Inserts in request-id order (see the module header on locking).
    attributed.sort_by_key(|entry| entry.event.request_id);

    let mut tx = pool.begin().await?;
    let mut stored = 0;
    for chunk in attributed.chunks(insert_chunk(backend)) {
        stored += insert_events(&mut tx, backend, &batch.edge, chunk).await?;
    }
    let newest: Vec<(KeyId, &UsageEvent)> = newest.into_iter().collect();
    for chunk in newest.chunks(TOUCH_CHUNK) {
        touch_keys(&mut tx, backend, chunk).await?;
    }
    announce_rate_limited(&mut tx, &batch.edge, &attributed, now).await?;
    tx.commit().await?;
    report.stored = stored;
    report.duplicate = attributed_count - stored;
    Ok(report)
}

/// The organization of every key the events name that exists.
async fn key_owners(
    pool: &AnyPool,
    backend: Backend,
    events: &[UsageEvent],
) -> Result<HashMap<KeyId, OrgId>, StoreError> {
    let mut ids: Vec<KeyId> = events.iter().filter_map(|event| event.key_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut owners = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let markers = Markers::list(backend, chunk.len());
        let sql = format!("SELECT id, org_id FROM api_keys WHERE id IN ({markers})");
        let full = chunk.len() == LOOKUP_CHUNK;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(cached(backend, full));
        for id in chunk {
            query = query.bind(id.to_bytes().to_vec());
        }
        for row in query.fetch_all(pool).await? {
            owners.insert(
                KeyId::from_bytes(bytes16(row.try_get(0)?)?),
                OrgId::from_bytes(bytes16(row.try_get(1)?)?),
            );
        }
    }
    Ok(owners)
}

/// Announces `key.rate_limited` for each key's first 429 of each hour (since the epoch) in the
/// batch, unless an earlier batch did: a notice row per key and hour, claimed by its insert.
async fn announce_rate_limited(
    tx: &mut AnyConnection,
    edge: &str,
    events: &[Attributed<'_>],
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut first: BTreeMap<(KeyId, i64), &Attributed<'_>> = BTreeMap::new();
    for entry in events.iter().filter(|entry| entry.event.status == 429) {
        let hour = entry.event.at.as_millis().div_euclid(3_600_000);
        let slot = first.entry((entry.key, hour)).or_insert(entry);
        if entry.event.at < slot.event.at {
            *slot = entry;
        }
    }
    for ((key, hour), entry) in first {
        let claimed = sqlx::query(
            "INSERT INTO key_notices (key_id, notice, sent_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key.to_bytes().to_vec())
        .bind(format!("{RATE_LIMITED_NOTICE_PREFIX}{hour}"))
        .bind(entry.event.at.as_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            continue;
        }
        let data = json!({
            "organization_id": entry.org,
            "key_id": key,
            "at": rfc3339(entry.event.at),
            "method": entry.event.method,
            "path": entry.event.path,
            "ip": entry.event.ip,
            "edge": edge,
        });
        let event = NewEvent::new(entry.org, EventType::KeyRateLimited, data, entry.event.at)?;
        outbox::enqueue(&mut *tx, &event, now).await?;
    }
    Ok(())
}

/// Inserts events, skipping request ids already stored; how many were inserted.
async fn insert_events(
    tx: &mut AnyConnection,
    backend: Backend,
    edge: &str,
    events: &[Attributed<'_>],
) -> Result<usize, StoreError> {
    let mut sql = String::from(
        "INSERT INTO usage_events (request_id, key_id, org_id, at, method, path, status, ip, \
         edge) VALUES ",
    );
    Markers::new(backend).push_rows(&mut sql, events.len(), 9);
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
    let full = events.len() == insert_chunk(backend);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(cached(backend, full));
    for Attributed { key, org, event } in events {
        query = query
            .bind(event.request_id.to_bytes().to_vec())
            .bind(key.to_bytes().to_vec())
            .bind(org.to_bytes().to_vec())
            .bind(event.at.as_millis())
            .bind(event.method.clone())
            .bind(event.path.clone())
            .bind(i64::from(event.status))
            .bind(event.ip.clone())
            .bind(edge.to_owned());
    }
    let done = query.execute(&mut *tx).await?;
    usize::try_from(done.rows_affected()).map_err(|_| corrupt("row count out of range"))
}

/// Moves each key's last use forward to its newest event of the batch (`keys` in ascending key
/// order); never backwards.
async fn touch_keys(
    tx: &mut AnyConnection,
    backend: Backend,
    keys: &[(KeyId, &UsageEvent)],
) -> Result<(), StoreError> {
    let full = keys.len() == TOUCH_CHUNK;
    if backend == Backend::Postgres {
        let markers = Markers::list(backend, keys.len());
        let sql = format!("SELECT id FROM api_keys WHERE id IN ({markers}) ORDER BY id FOR UPDATE");
        let mut lock = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(cached(backend, full));
        for (key, _) in keys {
            lock = lock.bind(key.to_bytes().to_vec());
        }
        lock.fetch_all(&mut *tx).await?;
    }
    let mut sql = String::from(
        "UPDATE api_keys SET last_used_at = v.column2, last_used_ip = v.column3 FROM (VALUES ",
    );
    Markers::new(backend).push_rows(&mut sql, keys.len(), 3);
    sql.push_str(
        ") AS v WHERE api_keys.id = v.column1 \
         AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.column2)",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(cached(backend, full));
    for (key, event) in keys {
        query = query
            .bind(key.to_bytes().to_vec())
            .bind(event.at.as_millis())
            .bind(event.ip.clone());
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// See [`crate::store::Store::list_usage`].
pub(super) async fn list(
    pool: &AnyPool,
    org: OrgId,
    key: KeyId,
    filter: &UsageFilter,
) -> Result<Page<UsageRecord>, StoreError> {
    let mut query = Filtered::new("key_id", Param::Bytes(key.to_bytes().to_vec()));
    let org = query.bind(Param::Bytes(org.to_bytes().to_vec()));
    query.condition(&format!("org_id = {org}"));
    if let Some(from) = filter.from {
        let from = query.bind(Param::Int(from.as_millis()));
        query.condition(&format!("at >= {from}"));
    }
    if let Some(to) = filter.to {
        let to = query.bind(Param::Int(to.as_millis()));
        query.condition(&format!("at < {to}"));
    }
    match filter.status {
        None => {}
        Some(StatusFilter::Exact(code)) => {
            let code = query.bind(Param::Int(i64::from(code)));
            query.condition(&format!("status = {code}"));
        }
        Some(class @ StatusFilter::Class(_)) => {
            let (low, high) = class.range();
            let low = query.bind(Param::Int(i64::from(low)));
            let high = query.bind(Param::Int(i64::from(high)));
            query.condition(&format!("status >= {low} AND status < {high}"));
        }
    }
    if let Some(ip) = &filter.ip {
        let ip = query.bind(Param::Text(ip.clone()));
        query.condition(&format!("ip = {ip}"));
    }
    if let Some((at, id)) = filter.after {
        let at = query.bind(Param::Int(at.as_millis()));
        let id = query.bind(Param::Bytes(id.to_bytes().to_vec()));
        // A row-value comparison: both databases seek the (key_id, at, request_id) index.
        query.condition(&format!("(at, request_id) < ({at}, {id})"));
    }
    let limit = query.bind(Param::Int(i64::from(filter.limit) + 1));
    let sql = format!(
        "SELECT {USAGE_COLUMNS} FROM usage_events WHERE {} \
         ORDER BY at DESC, request_id DESC LIMIT {limit}",
        query.conditions()
    );
    let rows = query.fetch_all(&sql, pool).await?;
    let items = rows
        .iter()
        .map(usage_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, filter.limit))
}

/// See [`crate::store::Store::daily_usage`].
pub(super) async fn daily(
    pool: &AnyPool,
    org: OrgId,
    key: KeyId,
    from: Timestamp,
    days: u32,
) -> Result<Vec<DailyStatusCount>, StoreError> {
    let to = from.plus_millis(i64::from(days) * DAY_MS);
    // Days are counted from `from`, so the arithmetic never meets a negative time.
    let rows = sqlx::query(
        "SELECT (at - $3) / 86400000 AS day, status, COUNT(*) AS requests FROM usage_events \
         WHERE key_id = $1 AND org_id = $2 AND at >= $3 AND at < $4 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(key.to_bytes().to_vec())
    .bind(org.to_bytes().to_vec())
    .bind(from.as_millis())
    .bind(to.as_millis())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DailyStatusCount {
                day: u32::try_from(row.try_get::<i64, _>(0)?)
                    .map_err(|_| corrupt("day out of range"))?,
                status: status_of(row.try_get(1)?)?,
                requests: u64_of(row.try_get(2)?)?,
            })
        })
        .collect()
}

/// See [`crate::store::Store::delete_usage_before`].
pub(super) async fn delete_before(pool: &AnyPool, cutoff: Timestamp) -> Result<u64, StoreError> {
    let events = Expiring::by("usage_events", "request_id", "at");
    sweep::delete_before(pool, &events, cutoff).await
}

fn status_of(value: i64) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| corrupt("status out of range"))
}

fn usage_from_row(row: &AnyRow) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        request_id: RequestId::from_bytes(bytes16(row.try_get("request_id")?)?),
        key_id: KeyId::from_bytes(bytes16(row.try_get("key_id")?)?),
        org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
        at: Timestamp(row.try_get("at")?),
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: status_of(row.try_get("status")?)?,
        ip: row.try_get("ip")?,
        edge: row.try_get("edge")?,
    })
}
