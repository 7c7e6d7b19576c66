-- A revoked signing key is never published or trusted again, from the moment of revocation,
-- on every replica: unlike a retired key, which verifies for a day after it stops signing.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;

-- Every change to the signing keys also moves the registrations' generation stamp: each
-- replica compares its cached keys' stamp with the table's before it trusts them, so a key
-- revoked by any process (the CLI, another replica) is dropped by the next request, not
-- after the key cache's ten seconds.
CREATE TRIGGER signing_keys_inserted AFTER INSERT ON signing_keys
BEGIN
    UPDATE clients_generation SET generation = random();
END;
CREATE TRIGGER signing_keys_updated AFTER UPDATE ON signing_keys
BEGIN
    UPDATE clients_generation SET generation = random();
END;
CREATE TRIGGER signing_keys_deleted AFTER DELETE ON signing_keys
BEGIN
    UPDATE clients_generation SET generation = random();
END;
