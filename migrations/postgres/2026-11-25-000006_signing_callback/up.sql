-- Where to tell the e-service that a citizen decided (it then fetches the result itself).
ALTER TABLE signing_requests ADD COLUMN callback_uri TEXT;
