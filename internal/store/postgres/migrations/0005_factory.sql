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
    CHECK (reserved >= 0 AND reserved <= quota)
);
