-- DPoP (RFC 9449): the key thumbprint a request, its code and its grant are bound to.
-- Same SQL on both backends.
ALTER TABLE auth_requests ADD COLUMN dpop_jkt TEXT;
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE token_families ADD COLUMN dpop_jkt TEXT;
