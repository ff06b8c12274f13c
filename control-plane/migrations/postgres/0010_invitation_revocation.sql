-- An invitation revoked before it was used: its link stops working (the invitee is told it
-- was revoked) and it leaves the organization's pending list.
ALTER TABLE invitations ADD COLUMN revoked_at BIGINT;
ALTER TABLE invitations ADD COLUMN revoked_by BYTEA;
-- The pending list of one organization: by this index, not a scan of every invitation.
-- (Not CONCURRENTLY: see 0009.)
CREATE INDEX invitations_org ON invitations (org_id, created_at);
