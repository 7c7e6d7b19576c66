ALTER TABLE clients DROP COLUMN keys_set_at;
