-- Keyward schema, version 2 (PostgreSQL): factory stations and the device registry (issue 3, enrollment).

CREATE TABLE stations (
    id            text COLLATE "C" PRIMARY KEY,
    environment   text NOT NULL,
    site          text NOT NULL,
    product_lines text NOT NULL, -- comma-separated product line names
    cert_serial   text COLLATE "C" NOT NULL,
    spki_sha256   bytea NOT NULL,
    quota         bigint NOT NULL, -- 0: no limit
    used          bigint NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_until   timestamptz NOT NULL,
    state         text NOT NULL,
    created_at    timestamptz NOT NULL,
    state_changed timestamptz NOT NULL
);

-- A device's serial is unique within its (environment, product line).
CREATE TABLE devices (
    environment         text COLLATE "C" NOT NULL,
    product_line        text COLLATE "C" NOT NULL,
    serial              text COLLATE "C" NOT NULL,
    state               text NOT NULL,
    station_id          text COLLATE "C" NOT NULL,
    site                text NOT NULL,
    enrolled_at         timestamptz NOT NULL,
    cert_serial         text COLLATE "C" NOT NULL,
    spki_sha256         bytea NOT NULL,
    reprovision_allowed boolean NOT NULL,
    force_renew         boolean NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (environment, product_line, serial)
);
CREATE INDEX devices_serial ON devices (serial);
CREATE INDEX devices_station ON devices (station_id);
