-- Keyward schema, version 2 (SQLite): factory stations and the device registry (issue 3, enrollment).

CREATE TABLE stations (
    id            TEXT PRIMARY KEY,
    environment   TEXT NOT NULL,
    site          TEXT NOT NULL,
    product_lines TEXT NOT NULL, -- comma-separated product line names
    cert_serial   TEXT NOT NULL,
    spki_sha256   BLOB NOT NULL,
    quota         INTEGER NOT NULL, -- 0: no limit
    used          INTEGER NOT NULL,
    valid_from    INTEGER NOT NULL,
    valid_until   INTEGER NOT NULL,
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    state_changed INTEGER NOT NULL
);

-- A device's serial is unique within its (environment, product line).
CREATE TABLE devices (
    environment         TEXT NOT NULL,
    product_line        TEXT NOT NULL,
    serial              TEXT NOT NULL,
    state               TEXT NOT NULL,
    station_id          TEXT NOT NULL,
    site                TEXT NOT NULL,
    enrolled_at         INTEGER NOT NULL,
    cert_serial         TEXT NOT NULL,
    spki_sha256         BLOB NOT NULL,
    reprovision_allowed INTEGER NOT NULL,
    force_renew         INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (environment, product_line, serial)
);
CREATE INDEX devices_serial ON devices (serial);
CREATE INDEX devices_station ON devices (station_id);
