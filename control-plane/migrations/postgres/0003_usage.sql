-- Usage events the edges report: one row per request that presented a known key (PostgreSQL).
-- Times are milliseconds since the Unix epoch; ids are raw bytes. The request id makes
-- ingestion idempotent (a batch sent twice stores each event once). Rows older than the
-- retention period (KEYPLANE_USAGE_RETENTION_DAYS) are deleted by the cleanup task.
CREATE TABLE usage_events (
    request_id  BYTEA PRIMARY KEY,
    key_id      BYTEA NOT NULL,
    org_id      BYTEA NOT NULL,
    at          BIGINT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      BIGINT NOT NULL,
    ip          TEXT,
    edge        TEXT NOT NULL
);
-- A key's events newest first (the usage API, its cursor and the daily counts).
CREATE INDEX usage_events_key_time ON usage_events (key_id, at DESC, request_id DESC);
-- Retention deletes by time.
CREATE INDEX usage_events_time ON usage_events (at);
-- The key listing's `last_used_ip` filter: keys used from an unexpected address.
CREATE INDEX api_keys_last_used_ip ON api_keys (org_id, last_used_ip);
