CREATE TABLE audit_entries_bigint (
    idx BIGINT PRIMARY KEY NOT NULL,
    entry TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO audit_entries_bigint (idx, entry, created_at)
    SELECT idx, entry, created_at FROM audit_entries ORDER BY idx;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_bigint RENAME TO audit_entries;

CREATE TABLE audit_nodes_bigint (
    node_key BIGINT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_nodes_bigint (node_key, hash)
    SELECT node_key, hash FROM audit_nodes ORDER BY node_key;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_bigint RENAME TO audit_nodes;
