-- Keyward schema, version 9 (PostgreSQL): signed checkpoints of the audit log's Merkle tree (RFC 9162 hashing,
-- c2sp.org/tlog-checkpoint notes). The events themselves are the leaves (audit_events, event n at leaf n-1);
-- a checkpoint keeps the compact range of its tree so the next one continues from it, and the signed note.

CREATE TABLE audit_checkpoints (
    size       bigint PRIMARY KEY, -- events in the tree
    root       bytea NOT NULL,     -- RFC 9162 root hash
    frontier   bytea NOT NULL,     -- the compact range's hashes, 32 bytes each, left to right
    note       bytea NOT NULL,     -- the signed note (c2sp.org/signed-note)
    created_at timestamptz NOT NULL
);

-- The log's identity: its origin (the first line of every checkpoint, and its key's name) and the Ed25519
-- audit-signing key that signs the checkpoints. One row per installation.
CREATE TABLE audit_log (
    id         bigint PRIMARY KEY CHECK (id = 1),
    origin     text NOT NULL,
    key_uri    text NOT NULL,
    created_at timestamptz NOT NULL
);
