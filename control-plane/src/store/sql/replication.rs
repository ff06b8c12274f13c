//! The replication side of the store: the feed's lineage (history id and chain), reading the
//! change log, the table snapshot edges load, and the edge registry.

use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::KeyTable;
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{Change, FeedChain};
use sqlx::{AnyPool, Row as _};

use super::rows::{bytes16, bytes32, corrupt, i64_of, optional_time, u64_of};
use crate::store::{EdgeRecord, FeedSnapshot, Registration, StoreError};

/// Changes read at a time while the chain is computed over an existing log.
const BACKFILL_PAGE: i64 = 1_000;

/// The feed's history id, made now (with the chain over any changes already logged) if the
/// database has none yet: a new database, or one from before lineages. Run at start-up; the
/// feed row is locked for the whole transaction, so instances starting together agree.
pub(super) async fn ensure_lineage(pool: &AnyPool) -> Result<HistoryId, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query("UPDATE feed SET seq = seq WHERE id = 1 RETURNING history_id")
        .fetch_one(&mut *tx)
        .await?;
    if let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>(0)? {
        return Ok(HistoryId::from_bytes(bytes16(bytes)?));
    }
    let history =
        HistoryId::generate().map_err(|error| StoreError::Corrupt(format!("CSPRNG: {error}")))?;
    let mut chain = FeedChain::genesis(history);
    let mut after = 0i64;
    loop {
        let rows =
            sqlx::query("SELECT seq, body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(BACKFILL_PAGE)
                .fetch_all(&mut *tx)
                .await?;
        let Some(last) = rows.last() else { break };
        let last_seq: i64 = last.try_get(0)?;
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            let body: Vec<u8> = row.try_get(1)?;
            chain = chain.next_encoded(&body);
            sqlx::query("UPDATE changes SET chain = $1 WHERE seq = $2")
                .bind(chain.to_bytes().to_vec())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        after = last_seq;
    }
    sqlx::query("UPDATE feed SET history_id = $1, chain = $2 WHERE id = 1")
        .bind(history.to_bytes().to_vec())
        .bind(chain.to_bytes().to_vec())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(history)
}

/// The chain at `seq` (0: the history's genesis).
pub(super) async fn chain_at(
    pool: &AnyPool,
    history: HistoryId,
    seq: u64,
) -> Result<FeedChain, StoreError> {
    if seq == 0 {
        return Ok(FeedChain::genesis(history));
    }
    let row = sqlx::query("SELECT chain FROM changes WHERE seq = $1")
        .bind(i64_of(seq)?)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let bytes = row
        .try_get::<Option<Vec<u8>>, _>(0)?
        .ok_or_else(|| corrupt("a change without its chain"))?;
    Ok(FeedChain::from_bytes(bytes32(bytes)?))
}

/// Changes read at a time while a snapshot is built.
const SNAPSHOT_PAGE: u64 = 10_000;

/// The table after changes `1..=seq`, with the chain there, rebuilt by replaying the change
/// log: O(changes), not O(keys), which is fine while snapshots are rare (an edge's first start,
/// or one that is ahead). Compacting the log into a stored table is future work.
pub(super) async fn snapshot_at(
    pool: &AnyPool,
    history: HistoryId,
    seq: u64,
) -> Result<FeedSnapshot, StoreError> {
    let mut table = KeyTable::new();
    while table.applied_seq() < seq {
        let after = table.applied_seq();
        let page = changes_after(pool, after, SNAPSHOT_PAGE.min(seq - after)).await?;
        if page.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "the change log ends at {after}, before sequence {seq}"
            )));
        }
        table
            .apply_all(&page)
            .map_err(|gap| StoreError::Corrupt(format!("change log: {gap}")))?;
    }
    let chain = chain_at(pool, history, seq).await?;
    Ok(FeedSnapshot { table, seq, chain })
}

/// The feed's head: the sequence number of the last committed change.
pub(super) async fn feed_head(pool: &AnyPool) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT seq FROM feed WHERE id = 1")
        .fetch_one(pool)
        .await?;
    u64_of(row.try_get::<i64, _>(0)?)
}

/// Up to `limit` changes after `after`, in order. Every change up to the head read before this
/// is committed (writers serialize on the feed row), so the result has no holes.
pub(super) async fn changes_after(
    pool: &AnyPool,
    after: u64,
    limit: u64,
) -> Result<Vec<Change>, StoreError> {
    let bodies = stored_changes_after(pool, after, limit).await?;
    let mut changes = Vec::with_capacity(bodies.len());
    for body in bodies {
        changes.extend(decode_stored(&body)?);
    }
    Ok(changes)
}

/// The change(s) a row of the change log stores.
pub(super) fn decode_stored(body: &[u8]) -> Result<Vec<Change>, StoreError> {
    decode_changes(body).map_err(|error| StoreError::Corrupt(format!("stored change: {error}")))
}

/// The stored encodings of up to `limit` changes after `after`, in order.
pub(super) async fn stored_changes_after(
    pool: &AnyPool,
    after: u64,
    limit: u64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let rows = sqlx::query("SELECT body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(i64_of(after)?)
        .bind(i64_of(limit)?)
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|row| Ok(row.try_get::<Vec<u8>, _>(0)?))
        .collect()
}

/// Creates or updates an edge's registration. From an operator (`reported_seq` is `None`) the
/// URL is set, whatever it was. From the edge's own pull (`Some`: it was seen now, at that
/// sequence) a new name is registered, and a known one only when the URL is the one on record:
/// a pull naming a registered edge from another URL changes nothing but the conflict note.
pub(super) async fn register_edge(
    pool: &AnyPool,
    name: &str,
    url: &str,
    reported_seq: Option<u64>,
    now: i64,
) -> Result<Registration, StoreError> {
    let Some(reported) = reported_seq else {
        sqlx::query(
            "INSERT INTO edges (name, url, created_at, reported_seq, acked_seq) \
             VALUES ($1, $2, $3, 0, 0) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, conflict_url = NULL, \
             conflict_at = NULL",
        )
        .bind(name.to_owned())
        .bind(url.to_owned())
        .bind(now)
        .execute(pool)
        .await?;
        return Ok(Registration::Registered);
    };
    let reported = i64_of(reported)?;
    // Twice at most: an edge removed between the two statements is registered on the second go.
    for _ in 0..2 {
        let done = sqlx::query(
            "INSERT INTO edges (name, url, created_at, last_seen_at, reported_seq, acked_seq) \
             VALUES ($1, $2, $3, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
             reported_seq = excluded.reported_seq, conflict_url = NULL, conflict_at = NULL \
             WHERE edges.url = excluded.url",
        )
        .bind(name.to_owned())
        .bind(url.to_owned())
        .bind(now)
        .bind(reported)
        .execute(pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(Registration::Registered);
        }
        let registered = sqlx::query(
            "UPDATE edges SET conflict_url = $1, conflict_at = $2 WHERE name = $3 RETURNING url",
        )
        .bind(url.to_owned())
        .bind(now)
        .bind(name.to_owned())
        .fetch_optional(pool)
        .await?;
        if let Some(row) = registered {
            return Ok(Registration::UrlConflict {
                registered_url: row.try_get(0)?,
            });
        }
    }
    Err(StoreError::Corrupt(format!(
        "edge {name} is being registered and removed at once"
    )))
}

/// Every registered edge.
pub(super) async fn edges(pool: &AnyPool) -> Result<Vec<EdgeRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, url, created_at, last_seen_at, reported_seq, acked_seq, last_push_at, \
         last_error, conflict_url, conflict_at FROM edges ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(EdgeRecord {
                name: row.try_get("name")?,
                url: row.try_get("url")?,
                last_seen_at: optional_time(row, "last_seen_at")?,
                reported_seq: u64_of(row.try_get::<i64, _>("reported_seq")?)?,
                acked_seq: u64_of(row.try_get::<i64, _>("acked_seq")?)?,
                last_push_at: optional_time(row, "last_push_at")?,
                last_error: row.try_get("last_error")?,
                conflict_url: row.try_get("conflict_url")?,
                conflict_at: optional_time(row, "conflict_at")?,
            })
        })
        .collect()
}

/// Records a push's outcome: the sequence the edge acknowledged (if it answered one) and the
/// error (`None` clears the last one).
pub(super) async fn record_push(
    pool: &AnyPool,
    name: &str,
    acked_seq: Option<u64>,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let acked = acked_seq.map(i64_of).transpose()?;
    sqlx::query(
        "UPDATE edges SET acked_seq = COALESCE($1, acked_seq), last_push_at = $2, \
         last_error = $3 WHERE name = $4",
    )
    .bind(acked)
    .bind(now)
    .bind(error.map(str::to_owned))
    .bind(name.to_owned())
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes an edge; whether it existed.
pub(super) async fn remove_edge(pool: &AnyPool, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM edges WHERE name = $1")
        .bind(name.to_owned())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
