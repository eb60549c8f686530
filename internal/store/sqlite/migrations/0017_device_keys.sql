-- Keyward schema, version 17 (SQLite): the glossary rows of device keys certified by Keyward live beside their
-- certificate, keyed by its serial. In keys their primary key was the URI spki:sha256:<hex>, a hash: on a store
-- of millions of certificates every issuance inserted into that index at a random place and dirtied a page of
-- its own, which the WAL wrote and the checkpointer copied back. Serials are time-ordered (48 bits of
-- milliseconds first), so this table grows at its right edge. The URI, the SPKI hash, the owner (the serial)
-- and the creation time are the certificate's; a key is looked up by URI through certificates_spki_sha256.
-- One row per key: the first certificate of a key carries it, a re-issue for the same key adds none.

CREATE TABLE device_keys (
    serial           TEXT PRIMARY KEY REFERENCES certificates (serial),
    algorithm        TEXT NOT NULL,
    state            TEXT NOT NULL,
    state_changed_at INTEGER NOT NULL,
    destroyed_at     INTEGER
) WITHOUT ROWID;

INSERT INTO device_keys (serial, algorithm, state, state_changed_at, destroyed_at)
SELECT c.serial, k.algorithm, k.state, k.state_changed_at, k.destroyed_at
FROM keys k JOIN certificates c ON c.serial = k.owner AND c.spki_sha256 = k.spki_sha256 AND c.created_at = k.created_at
WHERE k.purpose = 'device-identity' AND k.location = 'device' AND k.uri = 'spki:sha256:' || lower(hex(k.spki_sha256))
  AND NOT EXISTS (SELECT 1 FROM kdks WHERE kdks.uri = k.uri);

DELETE FROM keys WHERE uri IN (
    SELECT 'spki:sha256:' || lower(hex(c.spki_sha256)) FROM device_keys d JOIN certificates c ON c.serial = d.serial
);
