-- Organizations, API keys, the audit log and the change log (PostgreSQL).
-- Times are milliseconds since the Unix epoch; ids and digests are raw bytes.

CREATE TABLE orgs (
    id          BYTEA PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Head of this organization's audit chain: the last record's sequence number and hash.
    -- Every mutation of the organization's keys locks this row first, which serializes them.
    audit_seq   BIGINT NOT NULL,
    audit_head  BYTEA NOT NULL
);

CREATE TABLE api_keys (
    id                 BYTEA PRIMARY KEY,
    org_id             BYTEA NOT NULL REFERENCES orgs (id),
    name               TEXT NOT NULL,
    environment        TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    truncated          TEXT NOT NULL,
    digest             BYTEA NOT NULL UNIQUE,
    pepper_id          BIGINT NOT NULL,
    secret_hash        TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    rate_limit_rpm     BIGINT,
    rate_limit_burst   BIGINT,
    metadata           TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    created_by         BYTEA,
    updated_at         BIGINT NOT NULL,
    expires_at         BIGINT,
    revoked_at         BIGINT,
    revocation_reason  TEXT,
    revocation_note    TEXT,
    rotated_from       BYTEA,
    rotated_to         BYTEA,
    deleted_at         BIGINT,
    last_used_at       BIGINT,
    last_used_ip       TEXT
);
CREATE INDEX api_keys_listing ON api_keys (org_id, created_at DESC, id DESC);

-- The replication feed: one row per table change, in sequence order.
CREATE TABLE feed (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL
);
INSERT INTO feed (id, seq) VALUES (1, 0);

CREATE TABLE changes (
    seq         BIGINT PRIMARY KEY,
    org_id      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    body        BYTEA NOT NULL
);

CREATE TABLE audit_log (
    org_id         BYTEA NOT NULL REFERENCES orgs (id),
    seq            BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    action         TEXT NOT NULL,
    actor_key_id   BYTEA,
    target_key_id  BYTEA,
    ip             TEXT,
    user_agent     TEXT,
    request_id     TEXT NOT NULL,
    details        TEXT NOT NULL,
    prev_hash      BYTEA NOT NULL,
    hash           BYTEA NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_log_target ON audit_log (org_id, target_key_id, seq);

-- Append-only: the application never updates or deletes audit records.
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
