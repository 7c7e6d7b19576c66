ALTER TABLE clients DROP COLUMN signing_callback_uris;
ALTER TABLE clients DROP COLUMN signing_return_uris;
