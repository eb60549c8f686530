-- Keyward schema, version 5 (SQLite): factory site CAs (issue 4, offline manufacturing).

CREATE TABLE factory_sites (
    ca_id        TEXT PRIMARY KEY REFERENCES cas (id),
    environment  TEXT NOT NULL,
    product_line TEXT NOT NULL,
    site         TEXT NOT NULL,
    profile      TEXT NOT NULL,
    cn_pattern   TEXT NOT NULL,
    quota        INTEGER NOT NULL,
    reserved     INTEGER NOT NULL,
    issue_until  INTEGER NOT NULL, -- Unix microseconds
    created_at   INTEGER NOT NULL,
    audit_key_uri  TEXT NOT NULL, -- export signer (audit-signing key)
    audit_cert_der BLOB NOT NULL,
    CHECK (reserved >= 0 AND reserved <= quota)
);

-- Exports a site made of a batch's injection log (site side): the sequence number is unique per batch.
CREATE TABLE factory_exports (
    batch_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ca_id      TEXT NOT NULL REFERENCES cas (id),
    records    INTEGER NOT NULL,
    chain_head BLOB NOT NULL,
    final      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (batch_id, seq)
);

-- What headquarters reconciled of each batch (replay protection and chain continuity across exports).
CREATE TABLE factory_batches (
    batch_id     TEXT PRIMARY KEY,
    ca_id        TEXT NOT NULL REFERENCES cas (id),
    count        INTEGER NOT NULL,
    first_serial TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    injected     INTEGER NOT NULL,
    chain_head   BLOB NOT NULL,
    final        INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CHECK (injected >= 0 AND injected <= count)
);
CREATE INDEX factory_batches_ca ON factory_batches (ca_id);
