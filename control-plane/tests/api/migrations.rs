//! Upgrading a PostgreSQL database: an index an operator built beforehand, `CONCURRENTLY` (so
//! that instances still serving are not held up by its build), is kept by the migration that
//! creates it, as the README's upgrade advice says.

use crate::helpers::{drop_test_database, fresh_postgres_database, postgres_available};

#[tokio::test]
async fn the_in_flight_index_built_beforehand_is_kept_by_its_migration() {
    if !postgres_available().await {
        return;
    }
    let url = fresh_postgres_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("the fresh database");
    let migrator = sqlx::migrate!("./migrations/postgres");
    migrator
        .run_to(14, &pool)
        .await
        .expect("migrations up to 14");
    sqlx::query(
        "CREATE INDEX CONCURRENTLY webhook_deliveries_in_flight \
         ON webhook_deliveries (claimed_until, endpoint_id) WHERE state = 'pending'",
    )
    .execute(&pool)
    .await
    .expect("the index built by hand");
    migrator.run(&pool).await.expect("the rest, 15 included");
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index \
         WHERE indexrelid = 'webhook_deliveries_in_flight'::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("the index");
    assert!(valid);
    let applied: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("the migrations applied");
    assert!(applied >= 15, "{applied}");
    pool.close().await;
    drop_test_database(&url).await;
}
