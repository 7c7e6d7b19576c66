-- One stamp that every change to the clients table replaces, in the transaction that makes
-- the change. A replica that serves client_credentials grants from its memory of the clients
-- checks it in the same transaction that makes the grant's audit event durable: a grant is
-- acknowledged only if no client was added, changed or removed since that memory was read,
-- whichever process (another replica, the CLI, an operator's SQL) made the change.
CREATE TABLE clients_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO clients_generation (id, generation) VALUES (1, random());

CREATE TRIGGER clients_inserted AFTER INSERT ON clients
BEGIN
    UPDATE clients_generation SET generation = random();
END;
CREATE TRIGGER clients_updated AFTER UPDATE ON clients
BEGIN
    UPDATE clients_generation SET generation = random();
END;
CREATE TRIGGER clients_deleted AFTER DELETE ON clients
BEGIN
    UPDATE clients_generation SET generation = random();
END;
-- A random stamp, not a count: a database restored from a backup cannot bring back a value
-- that a running process remembers with other clients behind it. (A rebuild of the clients
-- table by copy and rename would drop these triggers; the audit tests check they fire.)
