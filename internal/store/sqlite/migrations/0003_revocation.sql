-- Revocation (issue 5), SQLite. Times are INTEGER unix microseconds, UTC, as in 0001.

-- RFC 5280 5.3.2 invalidity date of a revoked certificate, and the sequence number of its last revocation
-- change (revoke or release from hold), which delta CRLs and OCSP cache invalidation follow.
ALTER TABLE certificates ADD COLUMN invalidity_date INTEGER;
ALTER TABLE certificates ADD COLUMN revocation_seq INTEGER;
CREATE INDEX certificates_revocation_seq ON certificates (issuer_id, revocation_seq) WHERE revocation_seq IS NOT NULL;

-- Complete CRLs: WalkRevoked reads every revoked certificate of a CA in serial order from this partial
-- covering index alone (a page of entries is a range scan in it, with no visit to the table rows and their DER).
-- Only revoked rows are in it, so issuance does not pay for it.
CREATE INDEX certificates_revoked ON certificates (issuer_id, serial, not_after, revoked_at, revocation_reason, invalidity_date) WHERE status = 'revoked';

-- Monotonic counters: 'changes' (revocation changes), 'crl:<issuer>' (CRL numbers, RFC 5280 5.2.3),
-- 'filter:<scope>' (filter versions). Incrementing one locks its row until commit, so values commit in order.
CREATE TABLE revocation_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO revocation_counters (name, value) VALUES ('changes', 0);

CREATE TABLE published_crls (
    issuer_id   TEXT NOT NULL REFERENCES cas (id),
    number      INTEGER NOT NULL,
    delta       INTEGER NOT NULL, -- 0 complete, 1 delta
    base_number INTEGER NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    max_seq     INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    der         BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, delta, number)
);

-- Delegated signers of revocation data: OCSP responders (ocsp-signing) and filter signers (crl-signing).
CREATE TABLE revocation_signers (
    key_uri    TEXT PRIMARY KEY,
    issuer_id  TEXT NOT NULL REFERENCES cas (id),
    purpose    TEXT NOT NULL,
    cert_der   BLOB NOT NULL,
    not_after  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX revocation_signers_issuer ON revocation_signers (issuer_id, purpose, created_at);

CREATE TABLE published_filters (
    scope        TEXT NOT NULL,
    version      INTEGER NOT NULL,
    base_version INTEGER NOT NULL, -- 0 for a full filter
    issued_at    INTEGER NOT NULL,
    next_update  INTEGER NOT NULL,
    data         BLOB NOT NULL,
    PRIMARY KEY (scope, version, base_version)
);

-- The single-publisher lease (PostgreSQL uses an advisory lock instead).
CREATE TABLE publisher_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
