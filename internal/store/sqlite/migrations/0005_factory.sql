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
    CHECK (reserved >= 0 AND reserved <= quota)
);
