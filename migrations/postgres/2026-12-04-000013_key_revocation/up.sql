-- A revoked signing key is never published or trusted again, from the moment of revocation,
-- on every replica: unlike a retired key, which verifies for a day after it stops signing.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;

-- Every change to the signing keys also moves the registrations' generation stamp: each
-- replica compares its cached keys' stamp with the table's before it trusts them, so a key
-- revoked by any process (the CLI, another replica) is dropped by the next request, not
-- after the key cache's ten seconds.
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
CREATE TRIGGER signing_keys_truncated AFTER TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
