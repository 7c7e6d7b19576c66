DROP TABLE audit_outbox;
DROP TABLE audit_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_nodes;
DROP TABLE audit_entries;
