//! Deleting what is past its time in bounded chunks, so no statement holds a table for long and
//! two instances sweeping at once each delete a row once: the usage retention, spent sessions,
//! spent portal links.

use keyplane_shared::Timestamp;
use sqlx::AnyPool;

use crate::store::StoreError;

/// Rows deleted by one statement at most.
const CHUNK: i64 = 10_000;

/// A table whose rows expire: its name, the column that names a row, and the time column
/// compared with the cutoff (all fixed text, never input).
pub(super) struct Expiring {
    pub table: &'static str,
    pub id: &'static str,
    pub time: &'static str,
}

/// Deletes every row of `expiring` whose time is before `cutoff`, [`CHUNK`] rows at a time;
/// how many.
pub(super) async fn delete_before(
    pool: &AnyPool,
    expiring: &Expiring,
    cutoff: Timestamp,
) -> Result<u64, StoreError> {
    let Expiring { table, id, time } = expiring;
    let sql = format!(
        "DELETE FROM {table} WHERE {id} IN (SELECT {id} FROM {table} WHERE {time} < $1 LIMIT $2)"
    );
    let mut deleted = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(cutoff.as_millis())
            .bind(CHUNK)
            .execute(pool)
            .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < CHUNK.unsigned_abs() {
            return Ok(deleted);
        }
    }
}
