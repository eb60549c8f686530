-- Keyward schema, version 8 (PostgreSQL): the lifecycle of a CA after its creation. A CA has a generation (a
-- product line's issuing CA rolled over is generation 2, 3, ...), and a revoked CA records when and why its
-- parent revoked it. A CA request is a CA key waiting for its certificate from an offline root's ceremony:
-- what kind of CA it becomes and every constraint the ceremony must apply and the import must find.

ALTER TABLE cas ADD COLUMN generation bigint NOT NULL DEFAULT 1;
ALTER TABLE cas ADD COLUMN revoked_at timestamptz;
ALTER TABLE cas ADD COLUMN revocation_reason bigint NOT NULL DEFAULT 0;

CREATE TABLE ca_requests (
    ca_id        text COLLATE "C" PRIMARY KEY, -- the CA it becomes
    environment  text NOT NULL,
    product_line text NOT NULL,
    kind         text NOT NULL,
    site         text NOT NULL,
    quota        bigint NOT NULL,
    valid_for    bigint NOT NULL, -- seconds: a site CA's issuing window
    generation   bigint NOT NULL,
    replaces     text NOT NULL, -- the CA id it supersedes on import, '' if none
    key_uri      text NOT NULL,
    spki_sha256  bytea NOT NULL,
    csr_der      bytea NOT NULL,
    state        text NOT NULL, -- pending, imported, cancelled
    created_at   timestamptz NOT NULL,
    closed_at    timestamptz
);
-- One pending request per CA to be: what 'a second rollover while one is pending' is refused on.
CREATE UNIQUE INDEX ca_requests_pending ON ca_requests (environment, kind, product_line, site) WHERE state = 'pending';
