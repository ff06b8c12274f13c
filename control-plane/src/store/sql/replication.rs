//! The replication side of the store: reading the change log, and the edge registry.

use keyplane_shared::Change;
use keyplane_shared::table::codec::decode_changes;
use sqlx::{AnyPool, Row as _};

use super::rows::{i64_of, optional_time, u64_of};
use crate::store::{EdgeRecord, StoreError};

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
    let rows = sqlx::query("SELECT body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(i64_of(after)?)
        .bind(i64_of(limit)?)
        .fetch_all(pool)
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let body: Vec<u8> = row.try_get(0)?;
        let decoded = decode_changes(&body)
            .map_err(|error| StoreError::Corrupt(format!("stored change: {error}")))?;
        changes.extend(decoded);
    }
    Ok(changes)
}

/// Creates or updates an edge's registration. With `reported_seq` (the edge pulled), also when
/// it was seen and what it reported; without (an operator registered it), those stay as they were.
pub(super) async fn register_edge(
    pool: &AnyPool,
    name: &str,
    url: &str,
    reported_seq: Option<u64>,
    now: i64,
) -> Result<(), StoreError> {
    let reported = i64_of(reported_seq.unwrap_or(0))?;
    sqlx::query(
        "INSERT INTO edges (name, url, created_at, last_seen_at, reported_seq, acked_seq) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (name) DO UPDATE SET url = excluded.url, \
         last_seen_at = COALESCE(excluded.last_seen_at, edges.last_seen_at), \
         reported_seq = CASE WHEN excluded.last_seen_at IS NULL THEN edges.reported_seq \
         ELSE excluded.reported_seq END",
    )
    .bind(name.to_owned())
    .bind(url.to_owned())
    .bind(now)
    .bind(reported_seq.map(|_| now))
    .bind(reported)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every registered edge.
pub(super) async fn edges(pool: &AnyPool) -> Result<Vec<EdgeRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, url, created_at, last_seen_at, reported_seq, acked_seq, last_push_at, \
         last_error FROM edges ORDER BY name",
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
