-- Keyward schema, version 13 (SQLite): CRLs of millions of entries are stored in chunks, so that neither
-- publishing nor serving one holds it in memory. A CRL's size is recorded with it; a CRL larger than one
-- chunk (store.CRLChunkSize) keeps an empty der and its octets in published_crl_chunks, in order of seq.
-- The chunks are written before their published_crls row, in transactions of their own, so they carry no
-- foreign key to it; InsertCRL checks that they are all there and prunes them with their CRL.

ALTER TABLE published_crls ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE published_crls SET size = length(der);

CREATE TABLE published_crl_chunks (
    issuer_id TEXT NOT NULL REFERENCES cas (id),
    delta     INTEGER NOT NULL, -- 0 complete, 1 delta
    number    INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (issuer_id, delta, number, seq)
);
