-- The embedded portal: one-time links a host product's back end asks for (only the token's
-- SHA-256 digest is stored), the return URL a portal session remembers, and each
-- organization's branding. Times are milliseconds since the Unix epoch; ids raw bytes.

CREATE TABLE portal_links (
    -- SHA-256 of the link's token.
    token_digest  BYTEA PRIMARY KEY,
    org_id        BYTEA NOT NULL REFERENCES orgs (id),
    user_id       BYTEA NOT NULL REFERENCES users (id),
    return_url    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX portal_links_expiry ON portal_links (expires_at);

-- Where the host product's page the portal session came from is ("Back to ...").
ALTER TABLE sessions ADD COLUMN return_url TEXT;

CREATE TABLE org_branding (
    org_id           BYTEA PRIMARY KEY REFERENCES orgs (id),
    display_name     TEXT NOT NULL,
    logo_url         TEXT,
    accent_color     TEXT,
    -- The origins allowed to frame the portal, space-separated (empty: none).
    frame_ancestors  TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);
