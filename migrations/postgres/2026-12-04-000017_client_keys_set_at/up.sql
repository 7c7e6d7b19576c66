-- When a client's keys were last replaced (client keys ID): a registration or audit token
-- issued before it is refused, so replacing a leaked key also ends the tokens fetched with it.
ALTER TABLE clients ADD COLUMN keys_set_at BIGINT;
