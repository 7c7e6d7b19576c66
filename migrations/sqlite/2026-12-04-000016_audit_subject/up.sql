-- The citizen's pseudonym of each entry (its `subject=` line; NULL for `-`), indexed with
-- the entry's position, so the account page finds a citizen's latest entries by an index
-- lookup instead of scanning every entry's text. Derived from the entry, which alone is
-- hashed into the tree: a wrong value here can hide an entry from the account page, never
-- change what the log proves.
ALTER TABLE audit_entries ADD COLUMN subject TEXT;
UPDATE audit_entries
SET subject = NULLIF(
    substr(
        substr(entry, instr(entry, char(10) || 'subject=') + 9),
        1,
        instr(substr(entry, instr(entry, char(10) || 'subject=') + 9), char(10)) - 1
    ),
    '-'
)
WHERE instr(entry, char(10) || 'subject=') > 0;
CREATE INDEX audit_entries_subject ON audit_entries (subject, idx);
