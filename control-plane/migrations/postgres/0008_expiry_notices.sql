-- Each organization's expiry notice lead times: how many days before a key's expiry
-- `key.expiring` is announced (and its owner emailed). Without a row the defaults apply (7 and
-- 1 days). `days_before` is the list with a comma on each side of every value (",30,7,1,"; ","
-- for none), so the scheduler can match one lead with LIKE. Times are milliseconds since the
-- Unix epoch; ids raw bytes.
CREATE TABLE org_expiry_notices (
    org_id       BYTEA PRIMARY KEY NOT NULL REFERENCES orgs (id),
    days_before  TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);
