DROP TRIGGER signing_keys_truncated ON signing_keys;
DROP TRIGGER signing_keys_changed ON signing_keys;
ALTER TABLE signing_keys DROP COLUMN revoked_at;
