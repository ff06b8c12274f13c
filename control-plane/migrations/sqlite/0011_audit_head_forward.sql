-- An organization's audit head (`audit_seq`, `audit_head`, what verification holds the chain
-- to) only moves forward: records cut from the end of the log cannot be hidden by moving the
-- head back to them. (SQLite has no TRUNCATE: a DELETE fires the audit log's own trigger.)
CREATE TRIGGER orgs_audit_head_forward BEFORE UPDATE OF audit_seq ON orgs
WHEN NEW.audit_seq < OLD.audit_seq
BEGIN
    SELECT RAISE(ABORT, 'an organization''s audit head only moves forward');
END;
