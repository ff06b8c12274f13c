-- The feed's lineage (see keyplane_shared::table::lineage): a history id made with the
-- database, and a hash chain over the change log. Both are filled in by the control plane at
-- start-up (a database from before this migration gets its history and the chain over its
-- existing changes then, once); every new change stores the chain after it.
ALTER TABLE feed ADD COLUMN history_id BYTEA;
ALTER TABLE feed ADD COLUMN chain BYTEA;
ALTER TABLE changes ADD COLUMN chain BYTEA;

-- A pull that named a registered edge from another URL: refused (only the operator moves an
-- edge), and shown by `keyplane edges list` until the edge pulls from its own URL again.
ALTER TABLE edges ADD COLUMN conflict_url TEXT;
ALTER TABLE edges ADD COLUMN conflict_at BIGINT;
