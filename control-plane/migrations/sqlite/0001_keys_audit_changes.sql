-- Organizations, API keys, the audit log and the change log (SQLite).
-- Times are milliseconds since the Unix epoch; ids and digests are raw bytes.

CREATE TABLE orgs (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Head of this organization's audit chain: the last record's sequence number and hash.
    -- Every mutation of the organization's keys updates this row first, which serializes them.
    audit_seq   INTEGER NOT NULL,
    audit_head  BLOB NOT NULL
);

CREATE TABLE api_keys (
    id                 BLOB PRIMARY KEY NOT NULL,
    org_id             BLOB NOT NULL REFERENCES orgs (id),
    name               TEXT NOT NULL,
    environment        TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    truncated          TEXT NOT NULL,
    digest             BLOB NOT NULL UNIQUE,
    pepper_id          INTEGER NOT NULL,
    secret_hash        TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    rate_limit_rpm     INTEGER,
    rate_limit_burst   INTEGER,
    metadata           TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    created_by         BLOB,
    updated_at         INTEGER NOT NULL,
    expires_at         INTEGER,
    revoked_at         INTEGER,
    revocation_reason  TEXT,
    revocation_note    TEXT,
    rotated_from       BLOB,
    rotated_to         BLOB,
    deleted_at         INTEGER,
    last_used_at       INTEGER,
    last_used_ip       TEXT
);
CREATE INDEX api_keys_listing ON api_keys (org_id, created_at DESC, id DESC);

-- The replication feed: one row per table change, in sequence order.
CREATE TABLE feed (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO feed (id, seq) VALUES (1, 0);

CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    body        BLOB NOT NULL
);

CREATE TABLE audit_log (
    org_id         BLOB NOT NULL REFERENCES orgs (id),
    seq            INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    action         TEXT NOT NULL,
    actor_key_id   BLOB,
    target_key_id  BLOB,
    ip             TEXT,
    user_agent     TEXT,
    request_id     TEXT NOT NULL,
    details        TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_log_target ON audit_log (org_id, target_key_id, seq);

-- Append-only: the application never updates or deletes audit records.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
