-- Revocation (issue 5), PostgreSQL.

-- RFC 5280 5.3.2 invalidity date of a revoked certificate, and the sequence number of its last revocation
-- change (revoke or release from hold), which delta CRLs and OCSP cache invalidation follow.
ALTER TABLE certificates ADD COLUMN invalidity_date timestamptz;
ALTER TABLE certificates ADD COLUMN revocation_seq bigint;
CREATE INDEX certificates_revocation_seq ON certificates (issuer_id, revocation_seq) WHERE revocation_seq IS NOT NULL;

-- Complete CRLs: WalkRevoked reads every revoked certificate of a CA in serial order from this partial
-- covering index alone (a page of entries is a range scan in it, with no visit to the table rows and their DER).
-- Only revoked rows are in it, so issuance does not pay for it.
-- INCLUDE rather than key columns: the extra columns are only read, and the index stays ordered by serial.
CREATE INDEX certificates_revoked ON certificates (issuer_id, serial) INCLUDE (not_after, revoked_at, revocation_reason, invalidity_date) WHERE status = 'revoked';

-- Monotonic counters: 'changes' (revocation changes), 'crl:<issuer>' (CRL numbers, RFC 5280 5.2.3),
-- 'filter:<scope>' (filter versions). Incrementing one locks its row until commit, so values commit in order.
CREATE TABLE revocation_counters (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO revocation_counters (name, value) VALUES ('changes', 0);

CREATE TABLE published_crls (
    issuer_id   text COLLATE "C" NOT NULL REFERENCES cas (id),
    number      bigint NOT NULL,
    delta       boolean NOT NULL,
    base_number bigint NOT NULL,
    this_update timestamptz NOT NULL,
    next_update timestamptz NOT NULL,
    max_seq     bigint NOT NULL,
    entries     integer NOT NULL,
    der         bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (issuer_id, delta, number)
);

-- Delegated signers of revocation data: OCSP responders (ocsp-signing) and filter signers (crl-signing).
CREATE TABLE revocation_signers (
    key_uri    text COLLATE "C" PRIMARY KEY,
    issuer_id  text COLLATE "C" NOT NULL REFERENCES cas (id),
    purpose    text NOT NULL,
    cert_der   bytea NOT NULL,
    not_after  timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX revocation_signers_issuer ON revocation_signers (issuer_id, purpose, created_at);

CREATE TABLE published_filters (
    scope        text COLLATE "C" NOT NULL,
    version      bigint NOT NULL,
    base_version bigint NOT NULL, -- 0 for a full filter
    issued_at    timestamptz NOT NULL,
    next_update  timestamptz NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (scope, version, base_version)
);
