-- Firmware signing (SQLite): trust versions per environment, firmware-signing keys, releases and approvals.
-- Times are INTEGER unix microseconds, UTC, as in 0001.

CREATE TABLE firmware_roots (
    environment TEXT NOT NULL,
    version     INTEGER NOT NULL,
    key_uri     TEXT NOT NULL,
    cert_der    BLOB NOT NULL,
    pq_key_uri  TEXT NOT NULL,
    pq_public   BLOB NOT NULL,
    revoked     BLOB,            -- concatenated 32-byte key ids
    update_cbor BLOB,            -- signed trust update to this version; NULL for version 1
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, version)
);

CREATE TABLE firmware_signing_keys (
    kid          BLOB PRIMARY KEY,
    environment  TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    key_uri      TEXT NOT NULL,
    cert         BLOB NOT NULL,
    root_version INTEGER NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX firmware_signing_keys_env ON firmware_signing_keys (environment, created_at);

CREATE TABLE firmware_releases (
    id             TEXT PRIMARY KEY,
    environment    TEXT NOT NULL,
    product_line   TEXT NOT NULL,
    version        TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    image_sha256   BLOB NOT NULL,
    image_size     INTEGER NOT NULL,
    min_bootloader TEXT NOT NULL,
    not_before     INTEGER NOT NULL,
    not_after      INTEGER NOT NULL,
    threshold      INTEGER NOT NULL,
    hybrid         INTEGER NOT NULL,
    status         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    manifest       BLOB,
    signer_kid     BLOB,
    signed_at      INTEGER,
    -- Anti-rollback needs one release per sequence number, and one per version for people.
    UNIQUE (environment, product_line, sequence),
    UNIQUE (environment, product_line, version)
);

CREATE TABLE firmware_approvals (
    release_id  TEXT NOT NULL REFERENCES firmware_releases (id),
    signer      TEXT NOT NULL,
    approved_at INTEGER NOT NULL,
    PRIMARY KEY (release_id, signer) -- one approval per signer: m-of-n counts distinct people
);
