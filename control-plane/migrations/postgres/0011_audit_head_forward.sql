-- TRUNCATE does not fire row triggers: the audit log refuses it as it refuses UPDATE and DELETE.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- An organization's audit head (`audit_seq`, `audit_head`, what verification holds the chain
-- to) only moves forward: records cut from the end of the log cannot be hidden by moving the
-- head back to them.
CREATE FUNCTION orgs_audit_head_forward() RETURNS trigger AS $$
BEGIN
    IF NEW.audit_seq < OLD.audit_seq THEN
        RAISE EXCEPTION 'an organization''s audit head only moves forward';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER orgs_audit_head_forward BEFORE UPDATE ON orgs
    FOR EACH ROW EXECUTE FUNCTION orgs_audit_head_forward();
