-- The pending deliveries by endpoint, oldest due first: a claim walks the endpoints with
-- pending deliveries (one step each) and reads each one's oldest due deliveries up to its
-- places, so an endpoint slow to answer, its places full, costs a claim one step however many
-- of its deliveries are due (`control-plane/src/store/sql/outbox.rs`). The claim no longer
-- reads webhook_deliveries_due; it stays while instances of the version before, which do,
-- may run beside this one (a rolling upgrade). IF NOT EXISTS: on a large PostgreSQL
-- database, build it beforehand without holding the table (`CREATE INDEX CONCURRENTLY` with
-- the same name and definition; if that fails, drop the invalid index it leaves and build it
-- again) and this migration keeps it.
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint
    ON webhook_deliveries (endpoint_id, next_attempt_at, event_id) WHERE state = 'pending';
