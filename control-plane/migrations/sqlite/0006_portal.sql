-- The embedded portal: one-time links a host product's back end asks for (only the token's
-- SHA-256 digest is stored), the return URL a portal session remembers, and each
-- organization's branding. Times are milliseconds since the Unix epoch; ids raw bytes.

CREATE TABLE portal_links (
    -- SHA-256 of the link's token.
    token_digest  BLOB PRIMARY KEY NOT NULL,
    org_id        BLOB NOT NULL REFERENCES orgs (id),
    user_id       BLOB NOT NULL REFERENCES users (id),
    return_url    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX portal_links_expiry ON portal_links (expires_at);

-- Where the host product's page the portal session came from is ("Back to ...").
ALTER TABLE sessions ADD COLUMN return_url TEXT;

CREATE TABLE org_branding (
    org_id           BLOB PRIMARY KEY NOT NULL REFERENCES orgs (id),
    display_name     TEXT NOT NULL,
    logo_url         TEXT,
    accent_color     TEXT,
    -- The origins allowed to frame the portal, space-separated (empty: none).
    frame_ancestors  TEXT NOT NULL,
    updated_at       INTEGER NOT NULL
);
