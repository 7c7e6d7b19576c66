DROP INDEX audit_entries_subject;
ALTER TABLE audit_entries DROP COLUMN subject;
