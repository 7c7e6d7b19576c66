-- The audit log: entries are the leaves of an RFC 9162 Merkle tree. Every complete
-- subtree's hash is stored once, under node_key = level << 48 | index, so that any root
-- and any proof needs O(log n) rows. Rows are only ever inserted.
CREATE TABLE audit_entries (
    idx BIGINT PRIMARY KEY NOT NULL,
    entry TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_nodes (
    node_key BIGINT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_keys (
    name TEXT PRIMARY KEY NOT NULL,
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Events staged by the transaction of the action they describe (so they commit or vanish
-- with it), then moved into the tree, in batches, by the audit writer.
CREATE TABLE audit_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    entry TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
