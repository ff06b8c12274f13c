//! Looking into what the store holds, as the tests of secrets at rest and of the outbox do;
//! and, on PostgreSQL, holding the organizations' rows as another instance in the middle of a
//! change does, and counting who waits for them.

use serde_json::Value;
use sqlx::Row as _;

use super::TestApp;

impl TestApp {
    /// Every text and byte column of every row of `tables`, run together: what a reader of
    /// the database would see, to search for a secret in.
    pub async fn stored_text(&self, tables: &[&str]) -> String {
        let mut dump = String::new();
        for table in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
                .fetch_all(self.pool())
                .await
                .expect("rows");
            for row in rows {
                for index in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                        dump.push_str(&text);
                    }
                    if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(index) {
                        dump.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            }
        }
        dump
    }

    /// The bodies of the webhook events due now, taken from the outbox as a delivery worker
    /// would, then marked delivered so that the next call sees only newer ones.
    pub async fn take_due_events(&self) -> Vec<Value> {
        let now = self.state.now();
        let claimed = self
            .store
            .claim_deliveries(now, now, 100)
            .await
            .expect("claim");
        sqlx::query("UPDATE webhook_deliveries SET state = 'delivered'")
            .execute(self.pool())
            .await
            .expect("mark");
        claimed
            .iter()
            .map(|delivery| serde_json::from_str(&delivery.body).expect("json"))
            .collect()
    }

    /// Connections of the application's PostgreSQL database waiting for a lock.
    pub async fn lock_waiters(&self) -> i64 {
        sqlx::query(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(self.pool())
        .await
        .expect("pg_stat_activity")
        .get::<i64, _>(0)
    }

    /// Holds every organization's row from the test's own connection, as an instance in the
    /// middle of a change holds its organization's; released when the transaction is.
    pub async fn hold_org_rows(&self) -> sqlx::Transaction<'static, sqlx::Any> {
        let mut holder = self.pool().begin().await.expect("a transaction");
        sqlx::query("UPDATE orgs SET audit_seq = audit_seq")
            .execute(&mut *holder)
            .await
            .expect("the rows locked");
        holder
    }
}
