//! Deleting what is past its time in bounded chunks, so no statement holds a table for long and
//! two instances sweeping at once each delete a row once: the usage retention, spent sessions,
//! spent portal links, settled webhook history.

use keyplane_shared::Timestamp;
use sqlx::AnyPool;

use crate::store::StoreError;

/// Rows deleted by one statement at most.
const CHUNK: i64 = 10_000;

/// A table whose rows expire: its name, the column (or comma-separated columns) that name a
/// row, the time column compared with the cutoff, and any further condition a row must meet
/// (`AND …` or empty) (all fixed text, never input).
pub(super) struct Expiring {
    pub table: &'static str,
    pub id: &'static str,
    pub time: &'static str,
    pub also: &'static str,
}

impl Expiring {
    /// A table whose rows expire by `time` alone.
    pub(super) const fn by(table: &'static str, id: &'static str, time: &'static str) -> Self {
        Expiring {
            table,
            id,
            time,
            also: "",
        }
    }
}

/// Deletes every row of `expiring` whose time is before `cutoff`, [`CHUNK`] rows at a time;
/// how many.
pub(super) async fn delete_before(
    pool: &AnyPool,
    expiring: &Expiring,
    cutoff: Timestamp,
) -> Result<u64, StoreError> {
    delete_in_chunks(pool, expiring, cutoff, CHUNK).await
}

async fn delete_in_chunks(
    pool: &AnyPool,
    expiring: &Expiring,
    cutoff: Timestamp,
    chunk: i64,
) -> Result<u64, StoreError> {
    let Expiring {
        table,
        id,
        time,
        also,
    } = expiring;
    let sql = format!(
        "DELETE FROM {table} WHERE ({id}) IN \
         (SELECT {id} FROM {table} WHERE {time} < $1 {also} LIMIT $2)"
    );
    let mut deleted = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(cutoff.as_millis())
            .bind(chunk)
            .execute(pool)
            .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < chunk.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_expired_row_goes_however_many_chunks_it_takes_and_no_other() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("SQLite in memory");
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("table");
        // Rows 1..=10 expired (before 100), 11 and 12 not.
        for id in 1..=12_i64 {
            sqlx::query("INSERT INTO t (id, at) VALUES ($1, $2)")
                .bind(id)
                .bind(if id <= 10 { id } else { 100 + id })
                .execute(&pool)
                .await
                .expect("row");
        }
        let expiring = Expiring::by("t", "id", "at");
        // Chunks of 3: four statements, the last one short.
        let deleted = delete_in_chunks(&pool, &expiring, Timestamp(100), 3)
            .await
            .expect("deleted");
        assert_eq!(deleted, 10);
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("rows");
        assert_eq!(left, [11, 12]);
    }
}
