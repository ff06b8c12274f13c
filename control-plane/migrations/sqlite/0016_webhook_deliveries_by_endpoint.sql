-- The pending deliveries by endpoint, oldest due first: a claim walks the endpoints with
-- pending deliveries (one step each) and reads each one's oldest due deliveries up to its
-- places, so an endpoint slow to answer, its places full, costs a claim one step however many
-- of its deliveries are due (`control-plane/src/store/sql/outbox.rs`). It replaces
-- webhook_deliveries_due, read by the claim alone, which had a claim pass over every due
-- delivery of such an endpoint. IF NOT EXISTS: on a large PostgreSQL database, build it
-- beforehand without holding the table (`CREATE INDEX CONCURRENTLY` with the same name and
-- definition) and this migration keeps it.
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint
    ON webhook_deliveries (endpoint_id, next_attempt_at, event_id) WHERE state = 'pending';
DROP INDEX IF EXISTS webhook_deliveries_due;
