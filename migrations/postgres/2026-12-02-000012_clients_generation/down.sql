DROP TRIGGER clients_truncated ON clients;
DROP TRIGGER clients_changed ON clients;
DROP FUNCTION clients_changed();
DROP TABLE clients_generation;
