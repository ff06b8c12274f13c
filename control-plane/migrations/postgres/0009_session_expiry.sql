-- The hourly cleanup deletes sessions past their absolute expiry: by this index, not a scan.
-- (Not CONCURRENTLY: it waits for every other transaction, and instances starting together
-- wait in one for the migration lock, so it deadlocks; `several_instances` tests that start.)
CREATE INDEX sessions_expiry ON sessions (expires_at);
