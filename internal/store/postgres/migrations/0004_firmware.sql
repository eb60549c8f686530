-- Firmware signing (PostgreSQL): trust versions per environment, firmware-signing keys, releases and approvals.

CREATE TABLE firmware_roots (
    environment text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    key_uri     text NOT NULL,
    cert_der    bytea NOT NULL,
    pq_key_uri  text NOT NULL,
    pq_public   bytea NOT NULL,
    revoked     bytea,           -- concatenated 32-byte key ids
    update_cbor bytea,           -- signed trust update to this version; NULL for version 1
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (environment, version)
);

CREATE TABLE firmware_signing_keys (
    kid          bytea PRIMARY KEY,
    environment  text COLLATE "C" NOT NULL,
    algorithm    text NOT NULL,
    key_uri      text NOT NULL,
    cert         bytea NOT NULL,
    root_version bigint NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX firmware_signing_keys_env ON firmware_signing_keys (environment, created_at);

CREATE TABLE firmware_releases (
    id             text COLLATE "C" PRIMARY KEY,
    environment    text COLLATE "C" NOT NULL,
    product_line   text COLLATE "C" NOT NULL,
    version        text COLLATE "C" NOT NULL,
    sequence       bigint NOT NULL,
    image_sha256   bytea NOT NULL,
    image_size     bigint NOT NULL,
    min_bootloader text NOT NULL,
    not_before     timestamptz NOT NULL,
    not_after      timestamptz NOT NULL,
    threshold      integer NOT NULL,
    hybrid         boolean NOT NULL,
    status         text NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL,
    manifest       bytea,
    signer_kid     bytea,
    signed_at      timestamptz,
    -- Anti-rollback needs one release per sequence number, and one per version for people.
    UNIQUE (environment, product_line, sequence),
    UNIQUE (environment, product_line, version)
);

CREATE TABLE firmware_approvals (
    release_id  text COLLATE "C" NOT NULL REFERENCES firmware_releases (id),
    signer      text COLLATE "C" NOT NULL,
    approved_at timestamptz NOT NULL,
    PRIMARY KEY (release_id, signer) -- one approval per signer: m-of-n counts distinct people
);
