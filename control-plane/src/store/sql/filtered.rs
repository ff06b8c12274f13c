//! Queries with optional filters, for PostgreSQL and SQLite alike.

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::store::StoreError;

/// A bound parameter of a [`Filtered`] query.
pub(super) enum Param {
    Bytes(Vec<u8>),
    Int(i64),
    Text(String),
}

/// A `WHERE` clause built from optional filters, numbering its `$n` parameters as they are
/// added (sqlx's query builder writes `?` for the `Any` driver, which PostgreSQL rejects).
/// Only placeholders are ever formatted into the SQL; every value is bound.
pub(super) struct Filtered {
    conditions: Vec<String>,
    params: Vec<Param>,
}

impl Filtered {
    /// Starts with `column = <value>`.
    pub(super) fn new(column: &str, value: Param) -> Self {
        let mut query = Filtered {
            conditions: Vec::new(),
            params: Vec::new(),
        };
        let placeholder = query.bind(value);
        query.condition(&format!("{column} = {placeholder}"));
        query
    }

    /// Adds a value and returns its placeholder.
    pub(super) fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    pub(super) fn condition(&mut self, sql: &str) {
        self.conditions.push(format!("({sql})"));
    }

    pub(super) fn conditions(&self) -> String {
        self.conditions.join(" AND ")
    }

    pub(super) async fn fetch_all(
        self,
        sql: &str,
        pool: &AnyPool,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for param in self.params {
            query = match param {
                Param::Bytes(bytes) => query.bind(bytes),
                Param::Int(int) => query.bind(int),
                Param::Text(text) => query.bind(text),
            };
        }
        Ok(query.fetch_all(pool).await?)
    }
}
