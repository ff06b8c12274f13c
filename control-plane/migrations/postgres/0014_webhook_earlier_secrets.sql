-- Secrets replaced before the previous one that still sign (each until 24 hours after it was
-- replaced), newest first: 32 bytes of salt, then 8 bytes of the time it stops signing (unix
-- milliseconds, big-endian), per secret; NULL for none. `previous_salt` / `previous_until`
-- stay the most recent one (`control-plane/src/store/sql/webhook_rows.rs`).
ALTER TABLE webhook_endpoints ADD COLUMN earlier_secrets BYTEA;
