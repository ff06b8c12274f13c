-- The webhook history sweep (`control-plane/src/webhooks/history.rs`): each table by the time
-- it is swept by, and the deliveries by event (an event goes once no delivery refers to it,
-- which the deliveries' primary key, endpoint first, does not serve).
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_events_created ON webhook_events (created_at);
CREATE INDEX key_notices_sent ON key_notices (sent_at);
