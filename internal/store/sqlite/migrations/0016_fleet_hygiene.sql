-- Keyward schema, version 16 (SQLite): what the fleet key-hygiene scan reads besides the certificates.
--
-- csr_signatures keeps, per certificate issued from a CSR with ECDSA or Ed25519, the CSR's signature halves and
-- the digest they sign (about a hundred octets, not the whole CSR): two signatures by one key that share r
-- give the key away. It is keyed by the certificate's serial, which ascends with issuance time (issuer.NewSerial),
-- so each issuance appends at the right edge of one B-tree (WITHOUT ROWID: the key is the table). Not by the
-- certificates' rowid: VACUUM may renumber the rowids of a table without an INTEGER PRIMARY KEY. There is no
-- index on r: the scan groups by r in one full read, rather than every issuance paying a random-keyed insert.
CREATE TABLE csr_signatures (
    serial    TEXT PRIMARY KEY REFERENCES certificates (serial),
    algorithm INTEGER NOT NULL,
    digest    BLOB NOT NULL,
    r         BLOB NOT NULL,
    s         BLOB NOT NULL
) WITHOUT ROWID;

-- imported_certificates holds certificates issued by other systems, imported for the scan only: never trusted,
-- served, revoked or counted as issued. The same certificate is imported once per environment.
CREATE TABLE imported_certificates (
    environment  TEXT NOT NULL,
    der_sha256   BLOB NOT NULL,
    product_line TEXT NOT NULL,
    spki_sha256  BLOB NOT NULL,
    subject      TEXT NOT NULL,
    serial       TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    not_after    INTEGER NOT NULL,
    source       TEXT NOT NULL,
    der          BLOB NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, der_sha256)
);
-- ImportedBySPKI: the imported certificates of a key that certificates bind to two subjects.
CREATE INDEX imported_certificates_spki ON imported_certificates (spki_sha256);
