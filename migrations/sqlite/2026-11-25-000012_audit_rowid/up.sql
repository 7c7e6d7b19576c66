-- In SQLite only a column declared exactly INTEGER PRIMARY KEY is the table's row id.
-- Declared BIGINT PRIMARY KEY, each of these two tables had a second B-tree (an index on
-- the key) that every audit append wrote as well. Same columns, same values, one B-tree
-- each. (PostgreSQL has no such distinction; its tables are unchanged.)
CREATE TABLE audit_entries_rowid (
    idx INTEGER PRIMARY KEY NOT NULL,
    entry TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO audit_entries_rowid (idx, entry, created_at)
    SELECT idx, entry, created_at FROM audit_entries ORDER BY idx;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_rowid RENAME TO audit_entries;

CREATE TABLE audit_nodes_rowid (
    node_key INTEGER PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_nodes_rowid (node_key, hash)
    SELECT node_key, hash FROM audit_nodes ORDER BY node_key;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_rowid RENAME TO audit_nodes;
