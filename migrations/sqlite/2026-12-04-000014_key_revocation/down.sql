DROP TRIGGER signing_keys_deleted;
DROP TRIGGER signing_keys_updated;
DROP TRIGGER signing_keys_inserted;
ALTER TABLE signing_keys DROP COLUMN revoked_at;
