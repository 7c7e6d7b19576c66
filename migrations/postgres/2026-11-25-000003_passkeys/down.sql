DROP TABLE webauthn_ceremonies;
DROP TABLE passkeys;
ALTER TABLE auth_requests DROP COLUMN acr_required;
ALTER TABLE clients DROP COLUMN min_acr;
DROP INDEX citizens_webauthn_id;
ALTER TABLE citizens DROP COLUMN webauthn_id;
