ALTER TABLE signing_requests DROP COLUMN callback_uri;
