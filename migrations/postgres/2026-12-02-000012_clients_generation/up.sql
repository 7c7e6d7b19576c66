-- One stamp that every change to the clients table replaces, in the transaction that makes
-- the change. A replica that serves client_credentials grants from its memory of the clients
-- checks it in the same transaction that makes the grant's audit event durable: a grant is
-- acknowledged only if no client was added, changed or removed since that memory was read,
-- whichever process (another replica, the CLI, an operator's SQL) made the change.
CREATE TABLE clients_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO clients_generation (id, generation) VALUES (1, (random() * 9.2e18)::bigint);

CREATE FUNCTION clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE clients_generation SET generation = (random() * 9.2e18)::bigint;
    RETURN NULL;
END
$$;
-- Per statement: one move per change however many rows it touched, TRUNCATE included.
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
CREATE TRIGGER clients_truncated AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
-- A random stamp, not a count: a database restored from a backup cannot bring back a value
-- that a running process remembers with other clients behind it.
