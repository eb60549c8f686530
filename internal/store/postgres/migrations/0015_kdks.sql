-- Keyward schema, version 15 (PostgreSQL): key-derivation keys. Each row names one version of the KDK of an
-- (environment, product line, purpose): its key glossary row (keys, by URI) holds its state, algorithm and
-- location; this row adds what a derivation needs and never changes. Versions count from 1 per (environment,
-- product line, purpose); a rotation adds the next. Derived device keys are never stored: only their glossary
-- rows (location device, URI derived:...), which say which KDK version each device has.

CREATE TABLE kdks (
    uri          TEXT PRIMARY KEY REFERENCES keys (uri),
    environment  TEXT NOT NULL,
    product_line TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    created_at   timestamptz NOT NULL,
    UNIQUE (environment, product_line, purpose, version)
);
