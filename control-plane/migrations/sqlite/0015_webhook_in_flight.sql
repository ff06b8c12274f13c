-- The deliveries in flight (claimed, not yet recorded), by when their claim ends: the claim
-- finds the endpoints with a full batch in flight once, from these alone (not from every
-- pending delivery), to pass over an endpoint slow to answer
-- (`control-plane/src/store/sql/outbox.rs`).
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (claimed_until, endpoint_id)
    WHERE state = 'pending';
