-- Keyward schema, version 9 (SQLite): signed checkpoints of the audit log's Merkle tree (RFC 9162 hashing,
-- c2sp.org/tlog-checkpoint notes). The events themselves are the leaves (audit_events, event n at leaf n-1);
-- a checkpoint keeps the compact range of its tree so the next one continues from it, and the signed note.

CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY, -- events in the tree
    root       BLOB NOT NULL,       -- RFC 9162 root hash
    frontier   BLOB NOT NULL,       -- the compact range's hashes, 32 bytes each, left to right
    note       BLOB NOT NULL,       -- the signed note (c2sp.org/signed-note)
    created_at INTEGER NOT NULL
);

-- The log's identity: its origin (the first line of every checkpoint, and its key's name) and the Ed25519
-- audit-signing key that signs the checkpoints. One row per installation.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    origin     TEXT NOT NULL,
    key_uri    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
