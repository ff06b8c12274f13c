-- The hourly cleanup deletes sessions past their absolute expiry: by this index, not a scan.
CREATE INDEX sessions_expiry ON sessions (expires_at);
