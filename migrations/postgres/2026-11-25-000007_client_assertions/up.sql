-- private_key_jwt (RFC 7523) and the FAPI 2.0 profile of a client. Same SQL on both backends.

-- The client's public keys (a JWKS, JSON) for private_key_jwt; NULL for a client that
-- authenticates with a secret or not at all.
ALTER TABLE clients ADD COLUMN jwks TEXT;
-- A FAPI 2.0 client: private_key_jwt only, pushed authorization requests only.
ALTER TABLE clients ADD COLUMN fapi INTEGER NOT NULL DEFAULT 0;

-- Single-use `jti`s (client assertions, DPoP proofs) until they expire, keyed by a hash of
-- their issuer and value, so a replay is refused on every replica.
CREATE TABLE jti_records (
    key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX jti_records_expires ON jti_records(expires_at);
