-- Keyward schema, version 1 (PostgreSQL). Times are timestamptz, whose microsecond precision is the one
-- audit.Seal keeps. Identifiers that are compared and ordered (ids, URIs, serials, subjects) use the "C"
-- collation: byte order, as SQLite orders them, whatever the database's locale, and cheaper to compare.

CREATE TABLE cas (
    id           text COLLATE "C" PRIMARY KEY,
    environment  text NOT NULL,
    product_line text NOT NULL,
    kind         text NOT NULL,
    parent_id    text COLLATE "C" REFERENCES cas (id), -- NULL for a root
    key_uri      text NOT NULL,
    cert_der     bytea,
    subject      text NOT NULL,
    not_before   timestamptz NOT NULL,
    not_after    timestamptz NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE keys (
    uri              text COLLATE "C" PRIMARY KEY,
    purpose          text NOT NULL,
    algorithm        text NOT NULL,
    location         text NOT NULL,
    state            text NOT NULL,
    owner            text NOT NULL,
    spki_sha256      bytea,
    created_at       timestamptz NOT NULL,
    state_changed_at timestamptz NOT NULL,
    destroyed_at     timestamptz
);
CREATE INDEX keys_spki_sha256 ON keys (spki_sha256);

CREATE TABLE certificates (
    serial            text COLLATE "C" PRIMARY KEY,
    issuer_id         text COLLATE "C" NOT NULL REFERENCES cas (id),
    profile           text NOT NULL,
    profile_version   integer NOT NULL,
    subject           text COLLATE "C" NOT NULL,
    not_before        timestamptz NOT NULL,
    not_after         timestamptz NOT NULL,
    spki_sha256       bytea NOT NULL,
    der               bytea NOT NULL,
    status            text NOT NULL,
    revoked_at        timestamptz,
    revocation_reason integer NOT NULL,
    created_at        timestamptz NOT NULL
);
-- CertificatesBySPKI.
CREATE INDEX certificates_spki_sha256 ON certificates (spki_sha256);
-- ListCertificates by issuer, and by issuer and status in serial order: CRL, OCSP and filter builds page through
-- them with "serial > last ORDER BY serial", which this index answers as a range scan (no sort per page).
CREATE INDEX certificates_issuer_status ON certificates (issuer_id, status, serial);
-- ListCertificates by subject: a device's certificates.
CREATE INDEX certificates_subject ON certificates (subject);
-- Expiry and renewal sweeps.
CREATE INDEX certificates_not_after ON certificates (not_after);

-- certificate_keys binds each certified public key to the one subject it may be certified for. Its primary key
-- is what makes "a key shared by two devices is refused" hold across concurrent transactions and nodes: two
-- transactions certifying the same key serialise on the index entry, which a check-then-insert on
-- certificates alone would not do at READ COMMITTED.
CREATE TABLE certificate_keys (
    spki_sha256 bytea PRIMARY KEY,
    subject     text COLLATE "C" NOT NULL
);

CREATE TABLE audit_events (
    seq       bigint PRIMARY KEY,
    time      timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL,
    outcome   text NOT NULL,
    details   text NOT NULL, -- JSON object of strings, kept as written (jsonb would reorder it)
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);

-- Operator API tokens: only the SHA-256 of each token is stored.
CREATE TABLE tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
