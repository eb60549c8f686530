-- Keyward schema, version 1 (SQLite).
-- Times are INTEGER unix microseconds, UTC: the precision audit.Seal keeps, and both backends round-trip exactly.

CREATE TABLE cas (
    id           TEXT PRIMARY KEY,
    environment  TEXT NOT NULL,
    product_line TEXT NOT NULL,
    kind         TEXT NOT NULL,
    parent_id    TEXT REFERENCES cas (id), -- NULL for a root
    key_uri      TEXT NOT NULL,
    cert_der     BLOB,
    subject      TEXT NOT NULL,
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE keys (
    uri              TEXT PRIMARY KEY,
    purpose          TEXT NOT NULL,
    algorithm        TEXT NOT NULL,
    location         TEXT NOT NULL,
    state            TEXT NOT NULL,
    owner            TEXT NOT NULL,
    spki_sha256      BLOB,
    created_at       INTEGER NOT NULL,
    state_changed_at INTEGER NOT NULL,
    destroyed_at     INTEGER
);
CREATE INDEX keys_spki_sha256 ON keys (spki_sha256);

-- A rowid table with serial as a separate unique index: inserts append to the table and only the narrow
-- indexes take random writes, which is faster than clustering the DER on a random serial (WITHOUT ROWID).
CREATE TABLE certificates (
    serial            TEXT NOT NULL UNIQUE,
    issuer_id         TEXT NOT NULL REFERENCES cas (id),
    profile           TEXT NOT NULL,
    profile_version   INTEGER NOT NULL,
    subject           TEXT NOT NULL,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    spki_sha256       BLOB NOT NULL,
    der               BLOB NOT NULL,
    status            TEXT NOT NULL,
    revoked_at        INTEGER,
    revocation_reason INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);
-- Duplicate-key check (InsertCertificate) and CertificatesBySPKI.
CREATE INDEX certificates_spki_sha256 ON certificates (spki_sha256);
-- ListCertificates by issuer, and by issuer and status in serial order: CRL, OCSP and filter builds page through
-- them with "serial > last ORDER BY serial", which this index answers as a range scan (no sort per page).
CREATE INDEX certificates_issuer_status ON certificates (issuer_id, status, serial);
-- ListCertificates by subject: a device's certificates.
CREATE INDEX certificates_subject ON certificates (subject);
-- Expiry and renewal sweeps.
CREATE INDEX certificates_not_after ON certificates (not_after);

-- seq is the rowid: events are appended in sequence order, so the table only ever grows at its end.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    time      INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    details   TEXT NOT NULL, -- JSON object of strings
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);

-- Operator API tokens: only the SHA-256 of each token is stored.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
