-- People: users, their memberships and roles, sessions, invitations, and the host products'
-- organizations. Keys get an owner. Times are milliseconds since the Unix epoch; ids raw bytes.
-- No secret is stored in plaintext: passwords are Argon2id PHC strings, session and invitation
-- tokens are stored as their SHA-256 digests.

CREATE TABLE users (
    id                BYTEA PRIMARY KEY,
    -- Lowercased; NULL for a user known only from a host product's token without an email.
    email             TEXT UNIQUE,
    display_name      TEXT NOT NULL,
    -- Argon2id PHC string of a local account's password; NULL for host-product users.
    password_hash     TEXT,
    -- The host product (JWT issuer) and its subject, for users it introduced.
    external_issuer   TEXT,
    external_subject  TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (external_issuer, external_subject)
);

-- Roles an organization defines, and its override of the built-in developer role's ceiling.
CREATE TABLE roles (
    org_id      BYTEA NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE memberships (
    org_id      BYTEA NOT NULL REFERENCES orgs (id),
    user_id     BYTEA NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE sessions (
    id             BYTEA PRIMARY KEY,
    -- SHA-256 of the session token the cookie carries.
    token_digest   BYTEA NOT NULL UNIQUE,
    user_id        BYTEA NOT NULL REFERENCES users (id),
    org_id         BYTEA NOT NULL REFERENCES orgs (id),
    kind           TEXT NOT NULL CHECK (kind IN ('dashboard', 'portal')),
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    ended_at       BIGINT,
    ip             TEXT,
    user_agent     TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

CREATE TABLE invitations (
    id             BYTEA PRIMARY KEY,
    org_id         BYTEA NOT NULL REFERENCES orgs (id),
    -- Lowercased; NULL for the first owner's setup link (who chooses their email).
    email          TEXT,
    role           TEXT NOT NULL,
    token_digest   BYTEA NOT NULL UNIQUE,
    invited_by     BYTEA,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    accepted_at    BIGINT,
    accepted_by    BYTEA
);

-- A host product's organization (the token's organization claim) and the Keyplane one.
CREATE TABLE org_links (
    issuer       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    org_id       BYTEA NOT NULL REFERENCES orgs (id),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (issuer, external_id)
);

-- Every key has an owner (NULL only for keys made before the first owner was set up), and
-- names the user who made it.
ALTER TABLE api_keys ADD COLUMN owner_id BYTEA;
ALTER TABLE api_keys ADD COLUMN created_by_user BYTEA;
CREATE INDEX api_keys_owner ON api_keys (org_id, owner_id);

-- Audit records name the acting user and the member a membership action concerned; the
-- format the chain seals is versioned (1: before users; 2: with these fields).
ALTER TABLE audit_log ADD COLUMN format BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_log ADD COLUMN actor_user_id BYTEA;
ALTER TABLE audit_log ADD COLUMN target_user_id BYTEA;

-- The organization made at first start: its owners are the deployment's operators. A database
-- from before this migration takes its oldest organization.
CREATE TABLE deployment (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    operator_org  BYTEA NOT NULL REFERENCES orgs (id)
);
INSERT INTO deployment (id, operator_org)
    SELECT 1, id FROM orgs ORDER BY created_at, id LIMIT 1;
