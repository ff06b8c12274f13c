-- The webhook history sweep (`control-plane/src/webhooks/history.rs`) deletes an event once no
-- delivery refers to it: found by event id, which the deliveries' primary key (endpoint first)
-- does not serve.
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
