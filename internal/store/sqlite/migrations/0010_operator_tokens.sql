-- Keyward schema, version 10 (SQLite): operator tokens that can be listed, revoked by name and expire.
-- A token made before this version keeps working with no expiry (expires_at NULL). Names become unique, so
-- that a name says which credential acted; where two tokens shared a name, the older keeps it and each later
-- one is renamed NAME-ID (its id is listed beside it).

ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE tokens ADD COLUMN revocation_reason TEXT NOT NULL DEFAULT '';

UPDATE tokens SET name = name || '-' || id
WHERE EXISTS (SELECT 1 FROM tokens o WHERE o.name = tokens.name
              AND (o.created_at < tokens.created_at OR (o.created_at = tokens.created_at AND o.id < tokens.id)));

CREATE UNIQUE INDEX tokens_name ON tokens (name);
