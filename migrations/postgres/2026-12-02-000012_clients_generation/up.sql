-- One counter that every change to the clients table moves, in the transaction that makes
-- the change. A replica that serves client_credentials grants from its memory of the clients
-- checks it in the same transaction that makes the grant's audit event durable: a grant is
-- acknowledged only if no client was added, changed or removed since that memory was read,
-- whichever process (another replica, the CLI, an operator's SQL) made the change.
CREATE TABLE clients_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO clients_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE clients_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;
-- Per statement: one move per change however many rows it touched, TRUNCATE included.
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
CREATE TRIGGER clients_truncated AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION clients_changed();
