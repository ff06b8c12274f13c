-- Edges the pusher sends changes to: registered by `keyplane edges add`, `serve --edge`, or by
-- the edge itself when it pulls the feed with its name and URL.
CREATE TABLE edges (
    name          TEXT PRIMARY KEY NOT NULL,
    url           TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT,
    reported_seq  BIGINT NOT NULL DEFAULT 0,
    acked_seq     BIGINT NOT NULL DEFAULT 0,
    last_push_at  BIGINT,
    last_error    TEXT
);
