-- Webhooks: each organization's endpoints, the events they want, and the outbox. An event is
-- written in the same transaction as the change that causes it, with one delivery row per
-- endpoint that wants it; the delivery worker claims due deliveries (a lease in
-- claimed_until), sends them and records every attempt. Times are milliseconds since the Unix
-- epoch; ids raw bytes. Signing secrets are not stored: each is derived from the deployment's
-- signing secret and the endpoint's random salt (see control-plane/src/webhooks/signing.rs).

CREATE TABLE webhook_endpoints (
    id              BYTEA PRIMARY KEY,
    org_id          BYTEA NOT NULL REFERENCES orgs (id),
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    -- 1: deliveries are made; 0: disabled by a person or after failing for 5 days.
    enabled         BIGINT NOT NULL,
    -- The current secret's salt, and after a rotation the previous one's with its end.
    secret_salt     BYTEA NOT NULL,
    previous_salt   BYTEA,
    previous_until  BIGINT,
    -- When deliveries started failing without a success since (none: not failing).
    failing_since   BIGINT,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id, created_at);

-- The event types each endpoint wants.
CREATE TABLE webhook_subscriptions (
    endpoint_id  BYTEA NOT NULL REFERENCES webhook_endpoints (id),
    event_type   TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);

-- The outbox: each event's body exactly as it is signed and sent.
CREATE TABLE webhook_events (
    id          BYTEA PRIMARY KEY,
    org_id      BYTEA NOT NULL REFERENCES orgs (id),
    event_type  TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- One event to one endpoint: pending until delivered, or failed after 24 hours of retries.
-- No foreign keys: a change's deliveries are written first (one INSERT ... SELECT over the
-- endpoints that want the event) and its event only if there was one.
CREATE TABLE webhook_deliveries (
    endpoint_id      BYTEA NOT NULL,
    event_id         BYTEA NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    -- A worker holds the delivery until then (0: nobody).
    claimed_until    BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);

-- Every attempt: when, how long, the answer's status (none: no answer) and its first bytes.
CREATE TABLE webhook_attempts (
    endpoint_id  BYTEA NOT NULL,
    event_id     BYTEA NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status       BIGINT,
    outcome      TEXT NOT NULL,
    response     TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_id, attempt)
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);

-- Notices about a key sent (or passed over): one row per key and notice, so each is announced
-- once, by one instance, however many look. `notice` is `expiring:<seconds>` (that long before
-- the expiry), `expired`, or `rate_limited:<hour>` (the first 429 in that hour since the epoch).
CREATE TABLE key_notices (
    key_id   BYTEA NOT NULL,
    notice   TEXT NOT NULL,
    sent_at  BIGINT NOT NULL,
    PRIMARY KEY (key_id, notice)
);
CREATE INDEX api_keys_expiry ON api_keys (expires_at);
