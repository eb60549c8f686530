-- Keyward schema, version 5 (PostgreSQL): factory site CAs (issue 4, offline manufacturing).

CREATE TABLE factory_sites (
    ca_id        TEXT PRIMARY KEY REFERENCES cas (id),
    environment  TEXT NOT NULL,
    product_line TEXT NOT NULL,
    site         TEXT NOT NULL,
    profile      TEXT NOT NULL,
    cn_pattern   TEXT NOT NULL,
    quota        BIGINT NOT NULL,
    reserved     BIGINT NOT NULL,
    issue_until  TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    audit_key_uri  TEXT NOT NULL, -- export signer (audit-signing key)
    audit_cert_der BYTEA NOT NULL,
    CHECK (reserved >= 0 AND reserved <= quota)
);

-- Exports a site made of a batch's injection log (site side): the sequence number is unique per batch.
CREATE TABLE factory_exports (
    batch_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    ca_id      TEXT NOT NULL REFERENCES cas (id),
    records    BIGINT NOT NULL,
    chain_head BYTEA NOT NULL,
    final      BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, seq)
);

-- What headquarters reconciled of each batch (replay protection and chain continuity across exports).
CREATE TABLE factory_batches (
    batch_id     TEXT PRIMARY KEY,
    ca_id        TEXT NOT NULL REFERENCES cas (id),
    count        BIGINT NOT NULL,
    first_serial TEXT NOT NULL,
    last_seq     BIGINT NOT NULL,
    injected     BIGINT NOT NULL,
    chain_head   BYTEA NOT NULL,
    final        BOOLEAN NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    CHECK (injected >= 0 AND injected <= count)
);
CREATE INDEX factory_batches_ca ON factory_batches (ca_id);
