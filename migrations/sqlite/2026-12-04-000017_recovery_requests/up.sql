-- Recovery takes two officers: one asks (a row here, nothing else changes), a different
-- one approves, and only then do the sessions end and the new code exist. A stolen
-- registration credential alone can no longer take over an account.
CREATE TABLE recovery_requests (
    id TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens (id) ON DELETE CASCADE,
    remove_passkeys INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    approved_by TEXT,
    approved_at BIGINT
);
CREATE INDEX recovery_requests_citizen ON recovery_requests (citizen_id);
