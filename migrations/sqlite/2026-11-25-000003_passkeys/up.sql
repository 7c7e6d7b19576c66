-- Passkeys (WebAuthn) and assurance levels. Same SQL on both backends.

-- The WebAuthn user handle: random, stored once, so a discoverable passkey names its
-- account without carrying the username or the internal id.
ALTER TABLE citizens ADD COLUMN webauthn_id TEXT;
CREATE UNIQUE INDEX citizens_webauthn_id ON citizens(webauthn_id);

-- The lowest `acr` an e-service accepts, whatever its requests ask for.
ALTER TABLE clients ADD COLUMN min_acr TEXT;

-- The lowest `acr` this request needs (from acr_values and the client's minimum).
ALTER TABLE auth_requests ADD COLUMN acr_required TEXT;

-- A credential id is unique across all accounts: the same authenticator cannot be
-- registered to two citizens.
CREATE TABLE passkeys (
    cred_id TEXT PRIMARY KEY NOT NULL,
    citizen_id TEXT NOT NULL REFERENCES citizens(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The webauthn-rs Passkey as JSON: public key, counter, flags. No secret.
    credential TEXT NOT NULL,
    -- Backup-eligible: its provider may copy it to the citizen's other devices.
    synced INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_citizen ON passkeys(citizen_id);

-- Ceremony state (the challenge and what it allows), kept here so a ceremony begun on
-- one replica finishes on another. Keyed by a hash of the handle the browser holds;
-- taken (deleted) before the answer is checked, so each is used at most once.
CREATE TABLE webauthn_ceremonies (
    handle_hash TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    citizen_id TEXT REFERENCES citizens(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies(expires_at);
