-- Document signing. Same SQL on both backends.

-- Which citizen a client's pairwise subject names, so an e-service can ask a citizen it
-- knows only by that subject to sign. Written when the citizen first consents to the
-- client's sector.
CREATE TABLE subjects (
    sector TEXT NOT NULL,
    subject TEXT NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens(id) ON DELETE CASCADE,
    PRIMARY KEY (sector, subject)
);

-- The service's signing CA (one row): its certificate and its key, sealed under the KEK.
CREATE TABLE signing_ca (
    id TEXT PRIMARY KEY NOT NULL,
    certificate TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Each citizen's signing key (ECDSA P-256), sealed under the KEK.
CREATE TABLE citizen_signing_keys (
    citizen_id TEXT PRIMARY KEY NOT NULL REFERENCES citizens(id) ON DELETE CASCADE,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A request to sign a document's hash, and once approved its result.
CREATE TABLE signing_requests (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    citizen_id TEXT NOT NULL REFERENCES citizens(id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    hash_alg TEXT NOT NULL,
    document_hash TEXT NOT NULL,
    document_name TEXT NOT NULL,
    description TEXT,
    return_uri TEXT,
    code TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    signature TEXT,
    certificate TEXT,
    evidence TEXT,
    audit_from BIGINT
);
CREATE INDEX signing_requests_expires ON signing_requests(expires_at);
