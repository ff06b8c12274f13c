//! Parameter markers for statements generated with many parameters (the rows of a usage
//! batch, the keys of an `IN` list): `$1, $2, …` on PostgreSQL; on SQLite plain `?`, bound in
//! the order they appear.
//!
//! Why not `$n` on SQLite too, as every other query does: sqlx's SQLite driver asks SQLite the
//! name of each parameter to find which argument it takes, and SQLite finds a name by walking
//! the statement's list of named parameters, so a statement of n `$n` parameters costs about
//! n²/2 steps to bind (a statement of 50 usage rows has 450). `perf` on the `usage_ingest`
//! benchmark put 9 % of a batch's time in that walk (`sqlite3_bind_parameter_name`). A `?` has
//! no name: nothing to walk.
//!
//! On SQLite such statements are kept in the connection's statement cache (100 statements)
//! only when they have their chunk's full size ([`cached`]): a batch's last chunk can have any
//! length, and one cached statement of thousands of parameters per length would fill the cache
//! with them. PostgreSQL keeps them all: its statements are smaller (200 rows) and preparing
//! one again costs a round trip and a plan (in one trial that did not cache partial chunks,
//! batches of 100 events went from 30,000 to 19,000 events/s).

use std::fmt::Write as _;

use super::Backend;

/// Writes the markers of one statement, numbering them from 1.
pub(super) struct Markers {
    backend: Backend,
    written: usize,
}

impl Markers {
    /// The markers of a new statement on `backend`.
    pub(super) fn new(backend: Backend) -> Self {
        Markers {
            backend,
            written: 0,
        }
    }

    /// Appends `count` markers to `sql`, separated by `, `.
    pub(super) fn push(&mut self, sql: &mut String, count: usize) {
        for index in 0..count {
            if index > 0 {
                sql.push_str(", ");
            }
            self.written += 1;
            match self.backend {
                // Writing into a String cannot fail.
                Backend::Postgres => {
                    let _ = write!(sql, "${}", self.written);
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
    }

    /// Appends `rows` parenthesized rows of `columns` markers each, separated by `, `: the
    /// rows of a `VALUES` list.
    pub(super) fn push_rows(&mut self, sql: &mut String, rows: usize, columns: usize) {
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            self.push(sql, columns);
            sql.push(')');
        }
    }

    /// `count` markers: the list of an `IN (…)`.
    pub(super) fn list(backend: Backend, count: usize) -> String {
        let mut sql = String::new();
        Markers::new(backend).push(&mut sql, count);
        sql
    }
}

/// Whether a statement from [`Markers`] goes into the connection's statement cache, given
/// whether it has its chunk's full size (see the module header).
pub(super) fn cached(backend: Backend, full_chunk: bool) -> bool {
    full_chunk || backend == Backend::Postgres
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_the_markers_across_pushes_and_sqlite_leaves_them_unnamed() {
        let mut sql = String::new();
        let mut markers = Markers::new(Backend::Postgres);
        markers.push(&mut sql, 2);
        sql.push_str(" | ");
        markers.push(&mut sql, 3);
        assert_eq!(sql, "$1, $2 | $3, $4, $5");
        assert_eq!(Markers::list(Backend::Sqlite, 3), "?, ?, ?");
        assert_eq!(Markers::list(Backend::Postgres, 0), "");

        let mut rows = String::new();
        Markers::new(Backend::Postgres).push_rows(&mut rows, 2, 3);
        assert_eq!(rows, "($1, $2, $3), ($4, $5, $6)");
        let mut rows = String::new();
        Markers::new(Backend::Sqlite).push_rows(&mut rows, 2, 2);
        assert_eq!(rows, "(?, ?), (?, ?)");
    }

    #[test]
    fn sqlite_caches_only_full_chunks_and_postgres_every_statement() {
        assert!(cached(Backend::Sqlite, true));
        assert!(!cached(Backend::Sqlite, false));
        assert!(cached(Backend::Postgres, false));
    }
}
