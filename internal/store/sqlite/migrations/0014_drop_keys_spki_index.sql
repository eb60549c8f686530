-- Keyward schema, version 14 (SQLite): no index on keys (spki_sha256). No statement reads the key glossary by
-- SPKI hash (keys are read by URI, and a device key's URI is its SPKI hash already), yet every issuance inserted
-- into this index at a random place: on a store of millions of certificates each insert dirtied a page of its
-- own, written to the WAL and checkpointed, for nothing. The duplicate-key rule reads certificates_spki_sha256.

DROP INDEX IF EXISTS keys_spki_sha256;
