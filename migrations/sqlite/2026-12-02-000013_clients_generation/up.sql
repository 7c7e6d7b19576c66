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

CREATE TRIGGER clients_inserted AFTER INSERT ON clients
BEGIN
    UPDATE clients_generation SET generation = generation + 1;
END;
CREATE TRIGGER clients_updated AFTER UPDATE ON clients
BEGIN
    UPDATE clients_generation SET generation = generation + 1;
END;
CREATE TRIGGER clients_deleted AFTER DELETE ON clients
BEGIN
    UPDATE clients_generation SET generation = generation + 1;
END;
