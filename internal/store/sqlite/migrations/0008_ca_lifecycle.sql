-- Keyward schema, version 8 (SQLite): the lifecycle of a CA after its creation. A CA has a generation (a
-- product line's issuing CA rolled over is generation 2, 3, ...), and a revoked CA records when and why its
-- parent revoked it. A CA request is a CA key waiting for its certificate from an offline root's ceremony:
-- what kind of CA it becomes and every constraint the ceremony must apply and the import must find.

ALTER TABLE cas ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE cas ADD COLUMN revoked_at INTEGER;
ALTER TABLE cas ADD COLUMN revocation_reason INTEGER NOT NULL DEFAULT 0;

CREATE TABLE ca_requests (
    ca_id        TEXT PRIMARY KEY, -- the CA it becomes
    environment  TEXT NOT NULL,
    product_line TEXT NOT NULL,
    kind         TEXT NOT NULL,
    site         TEXT NOT NULL,
    quota        INTEGER NOT NULL,
    valid_for    INTEGER NOT NULL, -- seconds: a site CA's issuing window
    generation   INTEGER NOT NULL,
    replaces     TEXT NOT NULL, -- the CA id it supersedes on import, '' if none
    key_uri      TEXT NOT NULL,
    spki_sha256  BLOB NOT NULL,
    csr_der      BLOB NOT NULL,
    state        TEXT NOT NULL, -- pending, imported, cancelled
    created_at   INTEGER NOT NULL,
    closed_at    INTEGER
);
-- One pending request per CA to be: what 'a second rollover while one is pending' is refused on.
CREATE UNIQUE INDEX ca_requests_pending ON ca_requests (environment, kind, product_line, site) WHERE state = 'pending';
