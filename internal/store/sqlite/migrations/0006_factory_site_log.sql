-- Keyward schema, version 6 (SQLite): the issuance log of a site CA that enrolls devices at the site over EST
-- ('keyward factory serve'), in issuance order, which 'keyward factory export' signs for headquarters.

CREATE TABLE factory_site_log (
    ca_id       TEXT NOT NULL REFERENCES factory_sites (ca_id),
    idx         INTEGER NOT NULL, -- 0, 1, 2, ... per site CA, assigned under the site row's lock
    cert_serial TEXT NOT NULL UNIQUE REFERENCES certificates (serial),
    device      TEXT NOT NULL,
    station_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL, -- Unix microseconds
    PRIMARY KEY (ca_id, idx),
    CHECK (idx >= 0)
);
