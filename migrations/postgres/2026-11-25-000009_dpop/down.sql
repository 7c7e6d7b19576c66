ALTER TABLE token_families DROP COLUMN dpop_jkt;
ALTER TABLE auth_codes DROP COLUMN dpop_jkt;
ALTER TABLE auth_requests DROP COLUMN dpop_jkt;
