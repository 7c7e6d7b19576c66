-- private_key_jwt keys published by the client at a URL (fetched with a timeout, cached).
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
