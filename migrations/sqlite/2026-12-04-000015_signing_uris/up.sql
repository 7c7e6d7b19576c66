-- Where a signing request may send the citizen back (return_uri) and where the service
-- POSTs its outcome (callback_uri): JSON arrays of URIs registered with the client, matched
-- exactly as redirect URIs are. A request naming any other URI is refused, so a signing
-- client cannot make the service an open redirect or a request forger.
ALTER TABLE clients ADD COLUMN signing_return_uris TEXT;
ALTER TABLE clients ADD COLUMN signing_callback_uris TEXT;
