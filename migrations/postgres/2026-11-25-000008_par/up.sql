-- Pushed authorization requests (RFC 9126): the parameters a client pushed, until the
-- browser brings the request_uri to /authorize (once, within 60 s). Same SQL on both backends.
CREATE TABLE par_requests (
    request_uri_hash TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    params TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX par_requests_expires ON par_requests(expires_at);
