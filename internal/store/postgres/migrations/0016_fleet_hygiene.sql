-- Keyward schema, version 16 (PostgreSQL): what the fleet key-hygiene scan reads besides the certificates.
--
-- csr_signatures keeps, per certificate issued from a CSR with ECDSA or Ed25519, the CSR's signature halves and
-- the digest they sign (about a hundred octets, not the whole CSR): two signatures by one key that share r
-- give the key away. It is keyed by the certificate's primary key, its serial, which ascends with issuance
-- time (issuer.NewSerial), so each issuance appends at the right edge of its index; the row is written by the
-- certificate's own insert statement. There is no index on r: the scan groups by r in one full read, rather than
-- every issuance paying a random-keyed insert.
CREATE TABLE csr_signatures (
    serial    text COLLATE "C" PRIMARY KEY REFERENCES certificates (serial),
    algorithm integer NOT NULL,
    digest    bytea NOT NULL,
    r         bytea NOT NULL,
    s         bytea NOT NULL
);

-- imported_certificates holds certificates issued by other systems, imported for the scan only: never trusted,
-- served, revoked or counted as issued. The same certificate is imported once per environment.
CREATE TABLE imported_certificates (
    environment  text COLLATE "C" NOT NULL,
    der_sha256   bytea NOT NULL,
    product_line text NOT NULL,
    spki_sha256  bytea NOT NULL,
    subject      text COLLATE "C" NOT NULL,
    serial       text NOT NULL,
    issuer       text NOT NULL,
    not_after    timestamptz NOT NULL,
    source       text NOT NULL,
    der          bytea NOT NULL,
    imported_at  timestamptz NOT NULL,
    PRIMARY KEY (environment, der_sha256)
);
-- ImportedBySPKI: the imported certificates of a key that certificates bind to two subjects.
CREATE INDEX imported_certificates_spki ON imported_certificates (spki_sha256);
