-- The deliveries of one endpoint in flight (claimed, not yet recorded), which the claim counts
-- to pass over an endpoint slow to answer (`control-plane/src/store/sql/outbox.rs`).
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (endpoint_id, claimed_until)
    WHERE state = 'pending';
