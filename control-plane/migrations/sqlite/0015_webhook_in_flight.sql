-- The deliveries in flight (claimed, not yet recorded), by when their claim ends: the claim
-- finds the endpoints with a full batch in flight once, from these alone (not from every
-- pending delivery), to pass over an endpoint slow to answer
-- (`control-plane/src/store/sql/outbox.rs`). IF NOT EXISTS: on a large PostgreSQL database,
-- build it beforehand without holding the table (`CREATE INDEX CONCURRENTLY` with the same
-- name and definition) and this migration keeps it.
CREATE INDEX IF NOT EXISTS webhook_deliveries_in_flight ON webhook_deliveries (claimed_until, endpoint_id)
    WHERE state = 'pending';
