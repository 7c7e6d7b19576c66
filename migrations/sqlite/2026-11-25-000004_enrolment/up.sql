-- Enrolment by a registration officer, activation and recovery. Same SQL on both backends.

-- Verified identity attributes. The identity document number is sealed (AES-256-GCM under
-- the key-encryption key) and found by a keyed hash, which also makes it unique: one
-- account per document. Accounts made before enrolment existed have none.
ALTER TABLE citizens ADD COLUMN date_of_birth TEXT;
ALTER TABLE citizens ADD COLUMN gender TEXT;
ALTER TABLE citizens ADD COLUMN id_doc_sealed TEXT;
ALTER TABLE citizens ADD COLUMN id_doc_hash TEXT;
CREATE UNIQUE INDEX citizens_id_doc_hash ON citizens(id_doc_hash);

-- One-time activation and recovery codes: only a hash is stored; used once; expiring.
CREATE TABLE activation_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX activation_codes_citizen ON activation_codes(citizen_id);
CREATE INDEX activation_codes_expires ON activation_codes(expires_at);
