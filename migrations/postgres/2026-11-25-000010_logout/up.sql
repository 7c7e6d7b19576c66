-- RP-initiated and back-channel logout. Same SQL on both backends.
-- Where a client may send the browser after logout (a JSON list, matched exactly).
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT;
-- Where the provider POSTs a logout token when a citizen's session ends.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
